// What build/eval prints: its tables for people and its JSON fields, kept out of the program's
// main so that it reads as the evaluation's story.
#pragma once
#include <string>

#include "ddpm/eval/eval.h"
#include "ddpm/eval/ruler.h"

namespace dl::ddpm {

std::string json_metrics(const char* prefix, const SampleMetrics& m);   // "\"<prefix>fid\": ..., ..."
std::string json_number(double v);                                       // null for NaN or Inf
std::string json_ruler(const char* prefix, const RulerMetrics& r);      // the ruler's fields, prefixed
void print_judges(const Ruler& ruler, int64_t test_images);              // each judge and its accuracy
void print_ruler(const Ruler& ruler, const RulerMetrics& samples, const RulerMetrics& floor);  // the ruler's table
void print_row(const char* name, const SampleMetrics& m);               // one row of the single judge's table

}  // namespace dl::ddpm
