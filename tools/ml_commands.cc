// The commands `tenpak` hands to tenpak-ml (see ml_dispatch.h). One line
// each: the name and the one-line description shown by `tenpak --help`;
// tenpak-ml defines the options and parses them.
#include "commands.h"
#include "ml_dispatch.h"

namespace tenpak::cli {

void add_ml_commands(CLI::App& app, int& rc) {
  // One add_ml_command line per tenpak-ml command, e.g.
  //   add_ml_command(app, "eval", "perplexity, KL divergence and speed of a model on a text", rc);
  add_ml_command(app, "convert", "convert a llama2.c checkpoint to a Hugging Face model directory", rc);
  add_ml_command(app, "eval", "perplexity, KL divergence and speed of a model on a text", rc);
  add_ml_command(app, "generate", "continue a prompt with a model (greedy or sampled)", rc);
  add_ml_command(app, "quantize", "quantize a model with a preset (GPTQ, AWQ, bitsandbytes NF4/FP4/INT8, RTN)", rc);
  add_ml_command(app, "presets", "the quantization presets: formats, loaders, measured quality", rc);
  add_ml_command(app, "optimize", "pick the cheapest quantization that meets your constraints, from measurements", rc);
}

}  // namespace tenpak::cli
