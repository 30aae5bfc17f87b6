"""The affect benchmark suite (issue 4): CARL against honest baselines on EmoBank and GoEmotions.

    python -m benchmarks.affect --quick                   # 1 seed, main methods, 1,500 texts: ~10 min on 2 cores
    python -m benchmarks.affect --profile cpu             # all methods and ablations, 3 seeds, 1,500 texts
    python -m benchmarks.affect --profile full --device cuda --backbone <bert-base folder>

See ``docs/benchmarks.md`` for the protocol and the committed tables, and ``python -m benchmarks.affect --help``.
"""
