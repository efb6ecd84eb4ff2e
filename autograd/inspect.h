// Looking inside a recorded graph: walk it in forward order, find a node by name, summarize
// every value and gradient in a table, and draw the graph in Graphviz DOT.
//
// These read a graph that is still there: call them after the forward pass, or after a
// backward(keep_graph = true). A plain backward() releases the graph (each node forgets its
// inputs) as it goes. For gradients of intermediates, turn on set_retain_all_grads(true) (or
// RetainAllGrads below) before backward; parameters keep theirs anyway.
//
// Three kinds of node:
//   param  a leaf that requires grad (a model parameter, named by its state_dict key)
//   input  a leaf that does not (the noisy images "input.xt", the target "input.eps", constants)
//   act    the result of an op, named "<module path>.<op>" ("mid.attn.softmax")
#pragma once
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace dl {

// Summary of a tensor's values, accumulated in double.
struct TensorStats {
    double mean = 0, std = 0;  // population standard deviation
    double max_abs = 0;        // max |x|
    double l2 = 0;             // sqrt(sum x^2)
    bool finite = true;        // no NaN or Inf
};
TensorStats tensor_stats(const Tensor& t);

// "param", "input" or "act", as above.
const char* node_kind(const Variable& v);
bool is_op_node(const Variable& v);  // the result of an op (kind "act")

// Every node `root` depends on, in the order the forward pass ran: the ops by creation order,
// each leaf placed just before the first op that reads it. Needs the graph (see above).
std::vector<Variable> graph_order(const Variable& root);

// The node named `name` in the graph of `root`; throws dl::Error listing a few names that
// contain `name` (or the first few names) when there is none.
Variable find_node(const Variable& root, const std::string& name);

// Keep every intermediate gradient after backward (as if retain_grad() were called on each): an
// Observer that puts each op's gradient back after the walk takes it. On or off for this thread.
void set_retain_all_grads(bool on);
bool retain_all_grads();

// While one lives, backward keeps every intermediate gradient (set_retain_all_grads), and the
// previous setting comes back when it dies.
struct RetainAllGrads {
    RetainAllGrads() : prev_(retain_all_grads()) { set_retain_all_grads(true); }
    ~RetainAllGrads() { set_retain_all_grads(prev_); }
    RetainAllGrads(const RetainAllGrads&) = delete;
    RetainAllGrads& operator=(const RetainAllGrads&) = delete;
private:
    bool prev_;
};

// ---- the statistics table -----------------------------------------------------------------
struct NodeStats {
    std::string name, kind, op;
    Shape shape;
    TensorStats value;
    bool has_grad = false;
    TensorStats grad;
    double ratio = 0;  // |grad| / |value| (L2 norms); 0 when |value| is 0
};
std::vector<NodeStats> node_stats(const std::vector<Variable>& nodes);

// One row per node, in the given order:
//   #  kind  name  shape  mean  std  max|x|  |grad|  max|g|  |g|/|x|
// "-" where a node has no gradient (inputs, or no path to the loss) or a zero value norm.
std::string stats_table(const std::vector<NodeStats>& rows);

// ---- Graphviz DOT -------------------------------------------------------------------------
// One DOT node per graph node: ops as boxes labelled with name, op and output shape, parameters
// as blue ellipses and inputs as gray ellipses; one edge per (input, op) use, from the input to
// the op (data flow). `dot -Tsvg graph.dot -o graph.svg` draws it.
std::string graph_dot(const std::vector<Variable>& nodes, const std::string& title = "autograd");

}  // namespace dl
