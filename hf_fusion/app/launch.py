"""The multi-process launch this process belongs to (``accelerate launch`` / torchrun, mpirun), read from
the environment the launcher sets; import-free, so the CLI can ask before loading torch."""

from __future__ import annotations

import os

#: environment variables launchers set to the number of processes (torchrun, Intel MPI / MPICH, Open MPI, MVAPICH)
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """Processes of the launch this one belongs to, 1 when alone."""
    for name in WORLD_SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1
