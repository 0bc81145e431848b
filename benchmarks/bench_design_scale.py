"""Paper-scale cost of the spanning design: 4 sources of 52,002 / 9,846 / 200 / 200 rows (Alpaca,
OpenAssistant-guanaco, LIMA stackexchange / wikihow), 8 indicators, 2,000 candidates, 78 x 2,000.
Run: python benchmarks/bench_design_scale.py"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from instructmining.design import spanning_mixtures


def main() -> None:
    rng = np.random.default_rng(0)
    sizes = {"alpaca": 52002, "open_assistant": 9846, "stackexchange": 200, "wikihow": 200}
    ids = [f"{s}-{i:06d}" for s, n in sizes.items() for i in range(n)]
    pool = pd.DataFrame({"id": ids, "source": [i.rsplit("-", 1)[0] for i in ids], "role": "train",
                         "instruction": "x", "input": "", "output": "y"})
    cols = [f"i{j}" for j in range(8)]
    scores = pd.DataFrame(rng.standard_normal((len(ids), 8)), columns=cols).assign(id=ids)[["id", *cols]]
    t = time.perf_counter()
    spanning_mixtures(pool, scores, list(sizes), 78, 2000, 1, "redistribute", 2000, 3.0)
    print(f"spanning design, 2,000 candidates, 78 x 2,000: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
