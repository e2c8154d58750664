"""The project's benchmarks, one module per study; each command is a thin file ``scripts/benchmark_*.py``.

    stylize/   the stylize task's optimization loop: speed, convs, quality, memory, switches, overhead,
               compile, precision (one module each; ``runs`` builds and fits the runs they share)
    fast       per-style networks: inference and training speed, light vs Johnson after equal training
    adain      arbitrary-style networks: the same for AdaIN (VGG19 decoder and light network)
    finetune   fine-tuning: the feature cache, Lightning vs a plain loop
    video      seconds per frame, flow share and flicker of both video methods
    steady     per-style networks trained with and without the temporal term: flicker and loss terms
    gpu        the GPU run of issue 16, with a CPU fallback on tiny sizes
    common     the machine line, timers, resident memory, fresh child processes, quiet output

They use the project's public functions only, and set nothing process-wide when imported: each command
hides warnings and Lightning's banners at its start (``common.quiet``), unless given ``--warnings``.
"""
