// The training report, report.html: one self-contained page (inline SVG charts and data-URI images; no
// script, no network) drawn from a run directory's files: metrics.jsonl (learning curves), results.json
// (test figures, hardware and timing), config.yaml, report/metrics.json (per-class accuracy, the confusion
// matrix, calibration bins), report/confusion.png, report/gallery.json (test images with their top-3
// predictions), report/augmented_samples.png and model/config.json (class and superclass names).
// Every figure also sits in a data- attribute, so that tests and scripts can read the page back.
#pragma once
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "data/cifar.h"

namespace cifar::eval {

// report/gallery.json's content: the first `first` test images and the `mistakes` most confident wrong
// predictions, each with its label, its top-3 classes and probabilities, and the image as a PNG (base64).
// `log_probs`: N x C, in the order of `test`'s images.
nlohmann::json make_gallery(const data::Split& test, const at::Tensor& log_probs,
                            const std::vector<std::string>& class_names, int first = 24, int mistakes = 12);

// The page for a run directory; a missing optional file leaves its section saying so. Throws Error when
// the directory holds no finished run (results.json and metrics.jsonl), naming what is missing.
// `model_dir`: the run's artifact (default RUN_DIR/model), for the superclass names.
std::string render_report_html(const std::string& run_dir, const std::string& model_dir = "");
// Writes it atomically to `out` (default: RUN_DIR/report.html). Returns the path written.
std::string write_report_html(const std::string& run_dir, const std::string& out = "", const std::string& model_dir = "");

}  // namespace cifar::eval
