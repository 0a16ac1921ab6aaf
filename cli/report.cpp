// `cifar100 report RUN_DIR`: the run's self-contained HTML report (also written at the end of training).
#include "cli/commands.h"
#include "common/log.h"
#include "eval/html_report.h"

namespace cifar::cli {

namespace {
struct ReportArgs {
  std::string run_dir, out;
};
}  // namespace

Runner add_report(CLI::App& root) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* sub = root.add_subcommand(
      "report", "write a run directory's training report: one self-contained HTML page (learning curves, confusion "
                "matrix, per-class and superclass accuracy, calibration, test images with their predictions, config, "
                "hardware and timing)");
  sub->add_option("run_dir", a->run_dir, "a finished training run's directory (train --out)")->required();
  sub->add_option("--out,-o", a->out, "the HTML file to write (default: RUN_DIR/report.html)");
  return [a] {
    const std::string path = eval::write_report_html(a->run_dir, a->out);
    log::info("wrote {}", path);
    return 0;
  };
}

}  // namespace cifar::cli
