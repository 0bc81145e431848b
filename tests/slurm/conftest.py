"""Run the SLURM cluster tests last.

tests/slurm/test_slurm.py may install Debian's slurm-client and start (then stop) a cluster.
Once slurm-client is installed, every `snakemake` call without a running controller pays ~10 s
of `scontrol` retries (the SLURM executor plugin probes the cluster when Snakemake imports it),
so no other test may come after it."""


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # stable: order kept
