"""What runs on top of the library and never travels to the Hub: the ``hf-fusion`` command line
(:mod:`.cli`, :mod:`.push`), the paper's workflow (:mod:`.workflow`), the per-task model preparation
(:mod:`.task_model`), the multi-process launch reader (:mod:`.launch`) and the HEAR 2021 entry point
(:mod:`.hear`)."""
