"""What `peftqa --help` tells a person before the list of commands: what the tool is for, and the
commands most people start with (kept out of cli.py, which is about turning flags into configs)."""

# Wrapped by hand: RawDescriptionHelpFormatter (which keeps the epilog's columns) prints both as written.
DESCRIPTION = """\
Adapt a pretrained encoder (DistilBERT, MiniLM, other BERT-style models) to extractive
question answering with parameter-efficient fine-tuning (LoRA and its variants, (IA)3,
bottleneck adapters, prefix and prompt tuning, BitFit, ...: `peftqa methods` lists them),
compare the methods honestly (confidence intervals, paired tests, one report), then serve
them side by side in a browser and export them (Hugging Face folder or ONNX)."""

EPILOG = """\
where most people start:
  peftqa study --preset quick
      sweep, train and compare LoRA, (IA)3 and full fine-tuning on MiniLM-L6, minutes on a
      CPU (`make demo`); the report lands in studies/quick/report/report.html
  peftqa train --preset quick --method lora
      fine-tune one method and score it on SQuAD dev (`peftqa methods`: every method)
  peftqa serve studies/quick/runs/lora studies/quick/runs/ia3
      ask trained runs the same question side by side in a browser

`peftqa COMMAND --help` lists a command's flags; the documentation (docs/) has the rest."""
