"""Loads a checkpoint written by this project into a PyTorch twin of nn/unet.h (a module ref_unet
with a class UNet, in the folder given by --ref).

Not part of `make test`: the project never depends on Python. This is a by-hand check that
  1. the file is valid safetensors, read here with json + numpy only (no `safetensors` package);
  2. its model entries load into ref_unet.UNet() with load_state_dict, strict, unchanged, and so
     do its ema.<key> entries once the prefix is stripped;
  3. given the companion <file>.probe that the C++ test writes (input x, timesteps t, noise eps,
     the C++ eval-mode output and the gradients of mse(output, eps) for every parameter), PyTorch's
     forward and backward at the loaded weights agree with the C++ ones.

Usage (from the repository root):
  make && ./build/run_tests -tc='*check_checkpoint.py*' --no-skip      # writes /tmp/dl_unet_check.safetensors{,.probe}
  /usr/bin/python3 tests/check_checkpoint.py /tmp/dl_unet_check.safetensors --ref FOLDER_WITH_REF_UNET_PY
"""
import argparse, json, os, struct, sys

import numpy as np

DTYPES = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64}


def read_safetensors(path):
    """(tensors: name -> ndarray, metadata: dict) from the file's header and data."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    data = raw[8 + n:]
    meta = header.pop('__metadata__', {})
    out = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        out[name] = np.frombuffer(data[begin:end], dtype=DTYPES[info['dtype']]).reshape(info['shape'])
    return out, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('checkpoint')
    ap.add_argument('--ref', required=True, help='folder holding ref_unet.py, the PyTorch twin of nn/unet.h')
    a = ap.parse_args()
    sys.path.insert(0, a.ref)
    import torch
    import ref_unet

    tensors, meta = read_safetensors(a.checkpoint)
    print('metadata:', meta)
    # "in_ch=1 ch=32 ch_mult=1,2,2 num_res_blocks=2 attn_res=7 groups=8 dropout=0.1 resolution=28"
    cfg = dict(kv.split('=') for kv in meta['model'].split())
    ints = lambda s: tuple(int(v) for v in s.split(',') if v)
    build = lambda: ref_unet.UNet(in_ch=int(cfg['in_ch']), ch=int(cfg['ch']), ch_mult=ints(cfg['ch_mult']),
                                  num_res_blocks=int(cfg['num_res_blocks']), attn_res=ints(cfg['attn_res']),
                                  groups=int(cfg['groups']), dropout=float(cfg['dropout']),
                                  resolution=int(cfg['resolution']))
    model = build()

    # The model keys are everything but the checkpoint's own prefixed state.
    own = ('ema.', 'adam.', 'rng.')
    sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items() if not k.startswith(own) and k != 'step'}
    model.load_state_dict(sd)  # strict
    print(f'load_state_dict: {len(sd)} tensors, {sum(v.numel() for v in sd.values())} parameters: ok')
    ema = {k[4:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith('ema.')}
    if ema:
        build().load_state_dict(ema)
        print(f'ema: {len(ema)} tensors: ok')
    print('step', int(tensors['step']), 'adam.t', int(tensors.get('adam.t', -1)),
          'rng', {k: tensors[k].tolist() for k in tensors if k.startswith('rng.')})

    probe_path = a.checkpoint + '.probe'
    if not os.path.exists(probe_path):
        return
    probe, _ = read_safetensors(probe_path)
    model.eval()
    x, t, eps = (torch.from_numpy(probe[k].copy()) for k in ('x', 't', 'eps'))
    out = model(x, t)
    ours = torch.from_numpy(probe['out'].copy())
    err = (out - ours).abs().max().item()
    print(f'forward: max |torch - ours| = {err:.3g} (output std {out.std().item():.3g})')
    torch.nn.functional.mse_loss(out, eps).backward()
    worst = (0.0, '')
    for name, p in model.named_parameters():
        g = torch.from_numpy(probe['grad.' + name].copy())
        rel = ((p.grad - g).abs().max() / (p.grad.abs().max() + 1e-12)).item()
        worst = max(worst, (rel, name))
    print(f'backward: worst max|torch - ours| / max|torch| over {len(list(model.parameters()))} gradients = '
          f'{worst[0]:.3g} ({worst[1]})')
    ok = err < 1e-4 and worst[0] < 1e-3
    print('OK' if ok else 'MISMATCH')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
