"""Processes, devices and what they share: cluster start-up, the data mesh, per-process work,
files written once for all processes, and platform (XLA / GPU memory) defaults.

``from merjax import parallel`` gives the cluster and mesh API; the other modules are imported
by name (:mod:`merjax.parallel.per_process`, :mod:`merjax.parallel.files`,
:mod:`merjax.parallel.platform`).
"""

from merjax.parallel.cluster import (
    ENV_COORDINATOR as ENV_COORDINATOR,
)
from merjax.parallel.cluster import (
    ENV_NUM_PROCESSES as ENV_NUM_PROCESSES,
)
from merjax.parallel.cluster import (
    ENV_PROCESS_ID as ENV_PROCESS_ID,
)
from merjax.parallel.cluster import (
    add_distributed_arguments as add_distributed_arguments,
)
from merjax.parallel.cluster import (
    detect_cluster as detect_cluster,
)
from merjax.parallel.cluster import (
    initialize_distributed as initialize_distributed,
)
from merjax.parallel.cluster import (
    initialize_from_args as initialize_from_args,
)
from merjax.parallel.cluster import (
    is_primary as is_primary,
)
from merjax.parallel.mesh import (
    DATA_AXIS as DATA_AXIS,
)
from merjax.parallel.mesh import (
    check_batch_size as check_batch_size,
)
from merjax.parallel.mesh import (
    data_sharding as data_sharding,
)
from merjax.parallel.mesh import (
    data_size as data_size,
)
from merjax.parallel.mesh import (
    make_data_mesh as make_data_mesh,
)
from merjax.parallel.mesh import (
    prefetch_to_mesh as prefetch_to_mesh,
)
from merjax.parallel.mesh import (
    process_rows as process_rows,
)
from merjax.parallel.mesh import (
    replicate as replicate,
)
from merjax.parallel.mesh import (
    replicated as replicated,
)
from merjax.parallel.mesh import (
    resolve_mesh as resolve_mesh,
)
from merjax.parallel.mesh import (
    round_up as round_up,
)
from merjax.parallel.mesh import (
    shard_batch as shard_batch,
)
from merjax.parallel.mesh import (
    shard_rows as shard_rows,
)
