"""The lm-eval backend's ``ray_actors=N``: N Ray actors, each a single-process pyllm backend with
its own model, serving chunks of the requests; results come back in the requests' order.

The driver connects with ``ray.init()`` (``RAY_ADDRESS`` names a cluster; without one Ray starts a
local one) unless Ray is already initialized. Actors run with ``max_restarts`` and
``max_task_retries``, so a killed actor process is restarted by Ray and its chunk run again.
"""
import math

try:
    import ray
    from ray.util import ActorPool as _RayActorPool
except ImportError as e:
    if (e.name or "").split(".")[0] != "ray":
        raise
    raise ImportError('ray_actors= needs Ray, which is not installed: pip install "pyllm[ray]"', name=e.name) from e

from pyllm import scoring

# Restarts of a killed actor, and retries of its chunk, before the evaluation fails.
MAX_RESTARTS = 4
MAX_TASK_RETRIES = 4
# Chunks per actor: small enough to balance actors of unequal speed, large enough to batch.
CHUNKS_PER_ACTOR = 4


class LMWorker:
    """One actor: the single-process backend built from the driver's model_args."""

    def __init__(self, worker_args):
        from pyllm.lm_eval import PyllmLM
        try:
            self.lm = PyllmLM(**worker_args)
        except FileNotFoundError as e:
            context = ray.get_runtime_context()
            raise FileNotFoundError(f"pretrained {worker_args['pretrained']!r} does not exist on node "
                                    f"{context.get_node_id()} ({ray.util.get_node_ip_address()}): {e}") from None

    def score(self, pairs, batch_size, max_length):
        assert max_length == self.lm.max_length, (max_length, self.lm.max_length)  # built from the same args
        return self.lm._score(pairs, batch_size, False)  # with this actor's own prefix cache

    def generate(self, jobs):
        return [self.lm._generate_tokens(*job) for job in jobs]


class ActorPool:
    def __init__(self, size, worker_args):
        if not ray.is_initialized():
            ray.init()
        remote = ray.remote(LMWorker).options(num_cpus=worker_args["n_threads"], max_restarts=MAX_RESTARTS,
                                              max_task_retries=MAX_TASK_RETRIES)
        self.actors = [remote.remote(worker_args) for _ in range(size)]
        # A model that does not load fails here, with the node in the message, not at the first request.
        ray.get([actor.__ray_ready__.remote() for actor in self.actors])

    def map(self, method, items, args, desc, progress):
        """getattr(worker, method)(chunk, *args) over chunks of items on the actors, concatenated in
        the items' order."""
        if not items:
            return []
        size = max(1, math.ceil(len(items) / (len(self.actors) * CHUNKS_PER_ACTOR)))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        bar = scoring._progress_bar(len(items), desc, progress)
        results = []
        try:
            pool = _RayActorPool(self.actors)
            for part in pool.map(lambda actor, chunk: getattr(actor, method).remote(chunk, *args), chunks):
                results.extend(part)
                bar.update(len(part))
        finally:
            bar.close()
        return results
