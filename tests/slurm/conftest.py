"""Run the SLURM cluster tests last.

tests/slurm/test_slurm.py may install Debian's slurm-client and start (then stop) a cluster.
Once slurm-client is installed, every `snakemake` call without a running controller pays ~10 s
of `scontrol` retries (the SLURM executor plugin probes the cluster when Snakemake imports it),
so no other test may come after it.

The cluster test's figures (jobs planned, complete after the kill, rerun, resumed step, sacct rows)
are printed at the end of the session, so every CI log records them."""

import json


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # stable: order kept


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    summary = getattr(config, "im_slurm_summary", None)
    if summary:
        terminalreporter.write_sep("-", "SLURM test summary")
        terminalreporter.write_line(json.dumps(summary, indent=1, sort_keys=True))
