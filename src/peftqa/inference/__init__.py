"""A model answering: forward passes (forward.py), logits -> answers (postprocess.py), scoring a set of questions
(evaluate.py), a run folder and its loader (run_folder.py), re-scoring a saved run or a predictions file
(rescore.py) and answering one question or a file (answer.py). Training imports this stage: a run is scored while
it trains."""
