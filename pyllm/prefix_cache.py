"""A prefix cache across calls: the computed KV of recent token sequences, kept in a radix tree
over token ids, so a later request that starts with the same tokens (a few-shot context before
every question, every choice after the same question) computes only what follows.

- One tree per key: the model (its decoder object, dtype, KV dtype, batch invariance) and an
  ``extra_key`` for whatever else changes the KV (interventions). Different keys never share.
- Every stored entry is a one-row ``KVCache`` holding exactly the tokens on its path from the
  root; a request reuses the longest common prefix with any stored sequence (any entry below
  the point where the walk stops holds those tokens) through ``KVCache.take``, a copy with room
  to continue, so entries are never written to.
- Bounded in bytes (``max_bytes``: the entries' ``KVCache.nbytes``); the least recently used
  entries go first. An entry whose tokens another entry extends is dropped (it is redundant).
- Each change builds what it needs first (the copy may fail) and then edits the tree under a
  lock, so an error leaves the cache as it was.

Models with dynamic RoPE scaling are never cached: their keys depend on how the sequence was
split into calls once it passes the original context.
"""
import collections
import threading

__all__ = ["PrefixCache", "DEFAULT_MAX_BYTES", "prefix_cache_argument"]

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: a 5-shot context of a 7B model in float16 is ~0.3 GB


class _Node:
    __slots__ = ("edge", "children", "entry", "parent")

    def __init__(self, edge, parent):
        self.edge = edge          # the token ids from the parent to here (a tuple)
        self.children = {}        # first token of the child's edge -> child
        self.entry = None         # the _Entry ending exactly here, if any
        self.parent = parent


class _Entry:
    __slots__ = ("cache", "nbytes", "node", "key", "length")

    def __init__(self, cache, node, key, length):
        self.cache, self.node, self.key, self.length = cache, node, key, length
        self.nbytes = cache.nbytes


def _common(a, b, start):
    """Length of the common prefix of edge a and b[start:]."""
    n = min(len(a), len(b) - start)
    i = 0
    while i < n and a[i] == b[start + i]:
        i += 1
    return i


def model_key(model):
    """What about a model changes its KV: the loaded weights (the decoder object, alive as long as
    a cache of it is), the weight and KV dtypes and the batch-invariant kernels. None: not cacheable."""
    if model.spec.get("rope_type") == "dynamic":
        return None
    return (id(model._decoder), model.dtype, model.kv_dtype, model.batch_invariant)


class PrefixCache:
    """``PrefixCache(max_bytes=DEFAULT_MAX_BYTES)``: computed KV of recent token prefixes, shared by
    the calls it is given to (``pyllm.LLM(prefix_cache=...)``, the lm-eval backend's
    ``prefix_cache=`` model argument). ``hits``, ``misses`` and ``tokens_reused`` count lookups."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive number of bytes (an int), got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._roots = {}                            # key -> root _Node
        self._lru = collections.OrderedDict()       # _Entry -> None, least recent first
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.misses = self.tokens_reused = 0

    def __len__(self):
        return len(self._lru)

    def __repr__(self):
        return f"PrefixCache({len(self)} prefixes, {self.nbytes:,} of {self.max_bytes:,} bytes)"

    def clear(self):
        with self._lock:
            self._roots.clear()
            self._lru.clear()
            self.nbytes = 0

    def _drop_model(self, model):
        """Forget every prefix of model (closed: its entries can never be used again)."""
        with self._lock:
            for key in [k for k in self._roots if k[0] is not None and k[0][0] == id(model._decoder)]:
                stack = [self._roots[key]]
                while stack:
                    node = stack.pop()
                    stack.extend(node.children.values())
                    if node.entry is not None:
                        del self._lru[node.entry]
                        self.nbytes -= node.entry.nbytes
                del self._roots[key]

    # -- the tree -----------------------------------------------------------------------------

    def _walk(self, root, tokens):
        """(matched, node, below): tokens[:matched] lie on the tree; node is the last node fully
        matched, below the child whose edge the match ends inside (or None)."""
        node, i = root, 0
        while i < len(tokens):
            child = node.children.get(tokens[i])
            if child is None:
                return i, node, None
            c = _common(child.edge, tokens, i)
            if c < len(child.edge):
                return i + c, node, child
            node, i = child, i + c
        return i, node, None

    @staticmethod
    def _any_entry(node):
        """An entry at or below node: every leaf holds one, so any path down reaches one."""
        while node.entry is None:
            node = next(iter(node.children.values()))
        return node.entry

    def _remove(self, entry):
        """Drop entry and the nodes that then lead to no entry. Caller holds the lock."""
        node = entry.node
        node.entry = None
        del self._lru[entry]
        self.nbytes -= entry.nbytes
        while node.parent is not None and node.entry is None and not node.children:
            del node.parent.children[node.edge[0]]
            node = node.parent
        if node.parent is None and not node.children and node.entry is None:
            self._roots.pop(entry.key, None)

    # -- lookups and inserts ------------------------------------------------------------------------

    def _match(self, model, tokens, capacity, limit=None, extra_key=None, minimum=1):
        """(k, cache): the longest cached prefix of tokens, at most ``limit`` tokens, as a new
        one-row cache of ``capacity`` slots holding its k tokens (the rest of the request goes on
        in it); (0, None) when under ``minimum`` tokens are cached."""
        key = model_key(model)
        limit = len(tokens) if limit is None else min(limit, len(tokens))
        if key is None or limit < 1:
            return 0, None
        key = (key, extra_key)
        tokens = tuple(tokens[:limit])
        with self._lock:
            root = self._roots.get(key)
            matched, node, below = self._walk(root, tokens) if root is not None else (0, None, None)
            if matched < max(1, minimum):
                self.misses += 1
                return 0, None
            entry = self._any_entry(below if below is not None else node)
            self._lru.move_to_end(entry)
            # Take the copy with the entry known: eviction by another thread only drops the
            # tree's reference, the KVCache object stays valid while we hold it.
            source = entry.cache
        cache = source.take(matched, 0, capacity)
        with self._lock:
            self.hits += 1
            self.tokens_reused += matched
        return matched, cache

    def _cached_length(self, model, tokens, limit=None, extra_key=None):
        """How many leading tokens of tokens a match would reuse (no copy, no statistics)."""
        key = model_key(model)
        limit = len(tokens) if limit is None else min(limit, len(tokens))
        if key is None or limit < 1:
            return 0
        with self._lock:
            root = self._roots.get((key, extra_key))
            return self._walk(root, tuple(tokens[:limit]))[0] if root is not None else 0

    def _insert(self, model, tokens, cache, row=0, extra_key=None):
        """Keep the KV of tokens, the first len(tokens) real tokens of ``row`` of cache (copied, so
        the cache may go on being used). Nothing is kept when the model is not cacheable, when
        a stored sequence already holds these tokens, or when they alone exceed max_bytes."""
        key = model_key(model)
        if key is None or not tokens:
            return
        key = (key, extra_key)
        tokens = tuple(tokens)
        with self._lock:
            root = self._roots.get(key)
            if root is not None:
                matched, node, below = self._walk(root, tokens)
                if matched == len(tokens):  # held by a stored sequence: keep that one fresh
                    self._lru.move_to_end(self._any_entry(below if below is not None else node))
                    return
        kept = cache.take(len(tokens), row)  # may raise: nothing is changed yet
        if kept.nbytes > self.max_bytes:
            return
        with self._lock:
            root = self._roots.get(key)
            if root is None:
                root = self._roots[key] = _Node((), None)
            matched, node, below = self._walk(root, tokens)
            if matched == len(tokens):
                return  # another thread stored them meanwhile
            if below is not None:  # split the edge where the match ends
                cut = matched - sum(len(n.edge) for n in _path(node))
                middle = _Node(below.edge[:cut], node)
                node.children[middle.edge[0]] = middle
                below.edge = below.edge[cut:]
                below.parent = middle
                middle.children[below.edge[0]] = below
                node = middle
            if matched < len(tokens):
                leaf = _Node(tokens[matched:], node)
                node.children[leaf.edge[0]] = leaf
                node = leaf
            entry = node.entry = _Entry(kept, node, key, len(tokens))
            self._lru[entry] = None
            self.nbytes += entry.nbytes
            # Shorter stored sequences on the way are prefixes of this one: redundant now.
            up = node.parent
            while up is not None:
                parent = up.parent
                if up.entry is not None:
                    self._remove(up.entry)
                up = parent
            while self.nbytes > self.max_bytes:
                self._remove(next(iter(self._lru)))

    def _check(self):
        """Raise AssertionError unless the tree and the byte count agree (for tests)."""
        with self._lock:
            seen, total = set(), 0
            for key, root in self._roots.items():
                stack = [(root, 0)]
                while stack:
                    node, depth = stack.pop()
                    depth += len(node.edge)
                    assert node.parent is None or node.entry is not None or node.children, "a leaf without an entry"
                    if node.entry is not None:
                        entry = node.entry
                        assert entry.key == key and entry.node is node and entry.length == depth
                        assert entry.cache.lengths == [depth], "an entry's KV does not hold its tokens"
                        seen.add(entry)
                        total += entry.nbytes
                    for first, child in node.children.items():
                        assert child.parent is node and child.edge and child.edge[0] == first
                        stack.append((child, depth))
            assert seen == set(self._lru), "the LRU order and the tree disagree"
            assert total == self.nbytes <= self.max_bytes, "the byte count is wrong"


def _path(node):
    """The nodes from the root to node."""
    nodes = []
    while node is not None:
        nodes.append(node)
        node = node.parent
    return nodes


def prefix_cache_argument(value, name="prefix_cache"):
    """A PrefixCache or None from what a caller passes: True (a cache of DEFAULT_MAX_BYTES),
    False or None (off), a positive int (a cache of that many bytes) or a PrefixCache (shared)."""
    if value is None or value is False:
        return None
    if value is True:
        return PrefixCache()
    if isinstance(value, PrefixCache):
        return value
    if isinstance(value, int) and value > 0:
        return PrefixCache(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # from lm-eval's model_args
        return PrefixCache() if value.lower() == "true" else None
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return PrefixCache(int(value))
    raise ValueError(f"{name} must be True, False, None, a positive number of bytes or a pyllm.PrefixCache, "
                     f"got {value!r}")
