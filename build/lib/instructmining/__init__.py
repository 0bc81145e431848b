"""instructmining: InstructMining (Cao et al., arXiv 2307.06290) as a Snakemake experiment DAG."""

__version__ = "0.1.0"
