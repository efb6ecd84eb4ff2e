// For tests that run the built programs (build/train, build/sample, build/inspect) as a user would.
#pragma once
#include <doctest/doctest.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "tensor/formats/io.h"
#include "tensor/tensor.h"

namespace dl::test {

// Runs a shell command; returns its exit status and, in `output`, what it printed (both streams).
inline int run(const std::string& cmd, std::string* output = nullptr) {
    std::string log = "/tmp/dl_test_run_" + std::to_string(getpid()) + ".log";
    int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
    if (output) *output = read_file(log);
    std::remove(log.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Starts `sh -c cmd` in the background (for tests that signal or kill a running program).
inline pid_t spawn_shell(const std::string& cmd) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
        _exit(127);
    }
    return pid;
}

// The message of the dl::Error that f throws, or "(no error)".
inline std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// The build folder holding the programs: the one this test binary lives in (build/ or build-san/).
inline std::string build_dir() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    REQUIRE(n > 0);
    std::string exe(buf, size_t(n));
    return exe.substr(0, exe.rfind('/'));
}

// A fresh, empty folder under /tmp for one test.
inline std::string temp_dir(const char* name) {
    std::string d = "/tmp/dl_test_" + std::string(name) + "_" + std::to_string(getpid());
    std::system(("rm -rf " + d).c_str());
    make_dirs(d);
    return d;
}

}  // namespace dl::test
