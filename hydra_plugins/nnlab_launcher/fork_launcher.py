"""`hydra/launcher=cores` (conf/hydra/launcher/cores.yaml): see src/lab/fork_launcher.py."""

from src.lab.fork_launcher import ForkLauncher as _Base


class ForkLauncher(_Base):
    """Hydra's joblib launcher's settings, each job in a process forked from the launcher (where fork exists)."""
