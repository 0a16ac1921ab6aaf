// cifar100: one binary, one subcommand per file in cli/ (train, eval, predict, export, serve, data, sagemaker).
#include <torch/version.h>

#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "cli/workers.h"
#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"

int main(int argc, char** argv) {
  cifar::log::init();
  cifar::cli::set_program_args(argc, argv);
  cifar::cpu::tune_allocator();
  CLI::App app{"cifar100: train WideResNets on CIFAR-100, evaluate, export, predict and serve them, natively.\n"
               "Run `cifar100 COMMAND --help` for the options of a command."};
  app.name("cifar100");
  app.set_version_flag("--version",
                       std::string("cifar100 0.1.0 (LibTorch ") + TORCH_VERSION + ", " + CIFAR100_TORCH_BACKENDS + ")");
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  std::vector<std::pair<CLI::App*, cifar::cli::Runner>> commands;
  auto add = [&](const char* name, cifar::cli::Runner r) { commands.emplace_back(app.get_subcommand(name), std::move(r)); };
  add("train", cifar::cli::add_train(app));
  add("eval", cifar::cli::add_eval(app));
  add("data", cifar::cli::add_data(app));
  add("export", cifar::cli::add_export(app));
  add("predict", cifar::cli::add_predict(app));
  add("serve", cifar::cli::add_serve(app));
  add("report", cifar::cli::add_report(app));
  add("push", cifar::cli::add_push(app));
  add("pull", cifar::cli::add_pull(app));
  add("sagemaker", cifar::cli::add_sagemaker(app));

  const bool known = std::any_of(commands.begin(), commands.end(),
                                 [&](const auto& c) { return argc > 1 && c.first->get_name() == argv[1]; });
  if (argc > 1 && argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "ERROR: unknown command '%s' (commands: train, eval, predict, export, serve, data, sagemaker)\n%s", argv[1], app.help().c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version exit 0 on stdout; everything else prints the error and usage on stderr, exit 2.
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const cifar::ConfigError& e) {
    cifar::log::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    cifar::log::error("{}", e.what());
    return 1;
  }
  return 2;
}
