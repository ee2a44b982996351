// tenpak router train: learns the router's predictor with libtorch and
// writes a router file (router/include/tenpak/router.h) that `tenpak route`
// and `tenpak router eval` read without libtorch.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "ml_commands.h"
#include "tenpak/router.h"
#include "tenpak/router_data.h"

namespace tenpak::ml {

namespace {

struct TrainArgs {
  std::vector<std::string> data;
  std::string out;
  uint64_t seed = 1;
  int epochs = 300;
  double lr = 0.02, l2 = 1e-2;
  uint32_t hidden = 0, hash_bits = 12, kfold = 0, fold = 0;
  std::string label = "weak-wrong";
  bool dense_only = false, balance_groups = false;
  bool json = false;
};

// Label of one example: 1 when sending it to the strong model pays.
//   gain:       the strong model did strictly better than the weak one.
//   weak-wrong: the weak model's quality is below 1/2 (difficulty).
float label_of(const router::Example& e, const std::string& kind) {
  if (kind == "weak-wrong") return e.weak < 0.5 ? 1.f : 0.f;
  return e.strong > e.weak ? 1.f : 0.f;
}

int run_train(const TrainArgs& a, const std::string& command) {
  std::vector<router::Example> ex;
  for (auto& p : a.data) {
    auto r = router::read_data(p);
    if (!r.ok()) return cli::fail(r.status());
    for (auto& e : *r)
      if (a.kfold == 0 || router::fold_of(e.prompt, a.kfold) != a.fold) ex.push_back(std::move(e));
  }
  if (ex.size() < 10) return cli::fail({Errc::invalid, "only " + std::to_string(ex.size()) + " training examples"});
  torch::manual_seed(a.seed);
  torch::set_num_threads(1);  // one thread: the same seed gives the same bytes

  router::RouterModel m;
  m.hash_bits = a.hash_bits;
  m.hidden = a.hidden;
  const int64_t N = static_cast<int64_t>(ex.size()), D = m.input_dim(), H = int64_t(1) << a.hash_bits;
  std::vector<router::Features> feats;
  feats.reserve(ex.size());
  cli::ProgressBar bar("features");
  for (size_t i = 0; i < ex.size(); ++i) {
    if (auto st = router::validate_prompt(ex[i].prompt); !st.ok())
      return cli::fail({Errc::corrupt, ex[i].file + ":" + std::to_string(ex[i].line) + ": " + st.message()});
    feats.push_back(router::extract_features(ex[i].prompt, a.hash_bits));
    bar.update(i + 1, ex.size());
  }
  bar.finish();
  for (int d = 0; d < router::kNumDense; ++d) {
    double s = 0, s2 = 0;
    for (auto& f : feats) { s += f.dense[d]; s2 += double(f.dense[d]) * f.dense[d]; }
    double mean = s / N, var = std::max(0.0, s2 / N - mean * mean);
    m.dense_mean[d] = static_cast<float>(mean);
    m.dense_std[d] = static_cast<float>(var > 1e-12 ? std::sqrt(var) : 1.0);
  }
  auto X = torch::zeros({N, D});
  auto Y = torch::zeros({N, 1});
  auto xa = X.accessor<float, 2>();
  auto ya = Y.accessor<float, 2>();
  int64_t positives = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (!a.dense_only)
      for (auto& [k, v] : feats[i].sparse) xa[i][k] = v;
    auto z = m.standardise(feats[i]);
    for (int d = 0; d < router::kNumDense; ++d) xa[i][H + d] = z[d];
    ya[i][0] = label_of(ex[i], a.label);
    positives += ya[i][0] > 0.5f;
  }
  // --balance-groups: every group (MMLU subject, GSM8K, MT-Bench) weighs the
  // same in the loss, so the largest subjects do not decide what "hard" means
  // for subjects never seen.
  auto Wt = torch::ones({N, 1});
  if (a.balance_groups) {
    std::map<std::string, int64_t> per;
    for (auto& e : ex) per[e.group]++;
    auto wa = Wt.accessor<float, 2>();
    for (int64_t i = 0; i < N; ++i) wa[i][0] = static_cast<float>(double(N) / (per.size() * per[ex[i].group]));
  }
  if (positives == 0 || positives == N)
    return cli::fail({Errc::invalid, "every training label is the same (" + std::to_string(positives) + " of " + std::to_string(N) + " positive)"});

  torch::nn::Linear l1(D, a.hidden ? a.hidden : 1);
  torch::nn::Linear l2(a.hidden ? a.hidden : 1, 1);
  std::vector<torch::Tensor> params = l1->parameters();
  if (a.hidden) for (auto& p : l2->parameters()) params.push_back(p);
  if (!a.hidden) torch::nn::init::zeros_(l1->weight);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(a.lr).weight_decay(a.l2));
  auto forward = [&](const torch::Tensor& x) { return a.hidden ? l2->forward(torch::relu(l1->forward(x))) : l1->forward(x); };
  float loss_v = 0;
  cli::ProgressBar tbar("train");
  for (int e = 0; e < a.epochs; ++e) {
    opt.zero_grad();
    auto loss = torch::binary_cross_entropy_with_logits(forward(X), Y, Wt);
    loss.backward();
    opt.step();
    loss_v = loss.item<float>();
    tbar.update(e + 1, a.epochs);
  }
  tbar.finish();
  torch::NoGradGuard ng;
  m.p_ref = torch::sigmoid(forward(X)).mean().item<float>();
  auto copy = [](const torch::Tensor& t, std::vector<float>& v) {
    auto c = t.contiguous();
    v.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  if (!a.hidden) {
    copy(l1->weight, m.w);
    m.b = l1->bias.item<float>();
  } else {
    copy(l1->weight, m.w);  // hidden x D, row-major
    copy(l1->bias, m.b1);
    copy(l2->weight, m.w2);
    m.b2 = l2->bias.item<float>();
  }
  nlohmann::json meta = {{"command", command}, {"seed", a.seed}, {"examples", N}, {"positives", positives},
                         {"label", a.label}, {"epochs", a.epochs}, {"lr", a.lr}, {"l2", a.l2}, {"hidden", a.hidden},
                         {"hash_bits", a.hash_bits}, {"dense_only", a.dense_only}, {"balance_groups", a.balance_groups}, {"final_loss", loss_v}};
  // Absolute paths: `router eval` compares them with what it scores (warns on overlap).
  meta["data"] = nlohmann::json::array();
  for (auto& d : a.data) {
    std::error_code ec;
    auto abs = std::filesystem::weakly_canonical(d, ec);
    meta["data"].push_back(ec ? d : abs.string());
  }
  if (a.kfold) meta["excluded_fold"] = {{"k", a.kfold}, {"fold", a.fold}};
  m.meta = meta.dump();
  // A router that does not survive its own loader is never written.
  auto bytes = router::serialize_router(m);
  auto back = router::parse_router(bytes.data(), bytes.size(), a.out);
  if (!back.ok()) return cli::fail(back.status());
  if (auto st = router::save_router(m, a.out); !st.ok()) return cli::fail(st);
  if (a.json) {
    meta["output"] = a.out;
    meta["bytes"] = bytes.size();
    meta["p_ref"] = m.p_ref;
    std::printf("%s\n", cli::json_text(meta, -1).c_str());
  } else {
    std::printf("router: %s (%zu bytes), %s, %lld examples (%lld positive, label %s), final loss %.4f, p_ref %.3f\n",
                a.out.c_str(), bytes.size(), a.hidden ? ("MLP, " + std::to_string(a.hidden) + " hidden").c_str() : "logistic regression",
                static_cast<long long>(N), static_cast<long long>(positives), a.label.c_str(), loss_v, m.p_ref);
  }
  return cli::kOk;
}

}  // namespace

void add_router_commands(CLI::App& app, int& rc) {
  auto* group = app.add_subcommand("router", "train and evaluate the prompt router");
  group->require_subcommand(1);
  auto a = std::make_shared<TrainArgs>();
  auto* t = group->add_subcommand("train", "learn the router's predictor from labelled data (libtorch)");
  t->add_option("DATA", a->data, "RouteLLM *.csv, MT-Bench *judgement*.jsonl, or directories of them")->required();
  t->add_option("-o,--output", a->out, "router file to write")->required();
  t->add_option("--seed", a->seed, "random seed (same seed, same data: same file)")->capture_default_str();
  t->add_option("--epochs", a->epochs, "full-batch Adam steps")->capture_default_str()->check(CLI::Range(1, 100000));
  t->add_option("--lr", a->lr, "learning rate")->capture_default_str()->check(CLI::PositiveNumber)->check(cli::finite_number());
  t->add_option("--l2", a->l2, "weight decay")->capture_default_str()->check(CLI::NonNegativeNumber)->check(cli::finite_number());
  t->add_option("--hidden", a->hidden, "0: logistic regression; N: MLP with N ReLU units")->capture_default_str()->check(CLI::Range(0, 1024));
  t->add_option("--hash-bits", a->hash_bits, "2^bits n-gram buckets")->capture_default_str()->check(CLI::Range(8, 20));
  t->add_option("--label", a->label, "gain: strong better than weak; weak-wrong: weak quality < 1/2")
      ->capture_default_str()->check(CLI::IsMember({"gain", "weak-wrong"}));
  t->add_option("--kfold", a->kfold, "with --fold: leave out fold FOLD of K (by prompt hash)")->check(CLI::Range(2, 100));
  t->add_option("--fold", a->fold, "the fold left out (0..K-1)");
  t->add_flag("--balance-groups", a->balance_groups, "weigh every group (file / MMLU subject) equally in the loss");
  t->add_flag("--dense-only", a->dense_only, "train on the dense features only (n-gram weights stay 0)");
  t->add_flag("--json", a->json, "print a JSON report");
  t->callback([a, &rc, t] {
    if (a->kfold && a->fold >= a->kfold) { rc = cli::fail({Errc::invalid, "--fold must be below --kfold"}); return; }
    // The router file's metadata is JSON text holding these paths (the
    // command, the data's absolute paths), which nlohmann's dump refuses by
    // throwing on bytes that are not UTF-8: refused here, before any work.
    std::vector<const std::string*> paths{&a->out};
    for (auto& d : a->data) paths.push_back(&d);
    for (const std::string* p : paths) {
      try {
        (void)nlohmann::json(*p).dump();
      } catch (const nlohmann::json::type_error&) {
        rc = cli::fail({Errc::invalid, *p + ": this path is not valid UTF-8, and the router file stores it in its JSON "
                                            "metadata; rename the file or its directory"});
        return;
      }
    }
    std::ostringstream cmd;
    cmd << "tenpak router train";
    for (auto& d : a->data) cmd << ' ' << d;
    cmd << " -o " << a->out << " --seed " << a->seed << " --epochs " << a->epochs << " --lr " << a->lr << " --l2 " << a->l2
        << " --hidden " << a->hidden << " --hash-bits " << a->hash_bits << " --label " << a->label;
    if (a->kfold) cmd << " --kfold " << a->kfold << " --fold " << a->fold;
    if (a->dense_only) cmd << " --dense-only";
    if (a->balance_groups) cmd << " --balance-groups";
    rc = run_train(*a, cmd.str());
  });
}

}  // namespace tenpak::ml
