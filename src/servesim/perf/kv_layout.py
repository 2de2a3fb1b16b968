"""``KVLayout``: how many pool blocks a sequence holds when its layers form KV cache groups.

vLLM's hybrid KV-cache manager (vllm/v1/core/kv_cache_utils.py
``_get_kv_cache_groups_uniform_page_size``, kv_cache_coordinator.py,
single_type_kv_cache_manager.py) splits the attention layers into groups of equal size, one
attention type per group, all drawing pages of one size from one shared block pool. Every
group allocates a page per ``block_size`` tokens of new KV; what differs is what it frees
before each step (``remove_skipped_blocks``):

- a full-attention group frees nothing while the request runs;
- a sliding-window group frees the blocks wholly before token ``n - window + 1``
  (``SlidingWindowManager.get_num_skipped_tokens``: ``max(0, n - window + 1)``);
- a chunked-local group frees the blocks before the current chunk
  (``ChunkedLocalAttentionManager``: ``n // chunk * chunk``),

with ``n`` the tokens computed so far. A model whose layers are all of one growing kind is one
group (``plain``): a block is ``block_size`` tokens of every layer, as before.

Linear-attention (gated DeltaNet, Mamba) layers are groups of their own in vLLM V1 (v0.10+,
vllm/v1/kv_cache_interface.py ``MambaSpec``; single_type_kv_cache_manager.py ``MambaManager``):
each request holds one state page per such group from admission to finish, whatever its
length. vLLM raises the attention block size until one attention page holds as many bytes as
one state (vllm/model_executor/models/config.py ``HybridAttentionMambaModelConfig.
verify_and_update_config``: ``attn_block_size = 16 * cdiv(state_page, 16 * attn_page_1_token)``)
and pads the state page to it; the replica runs at that block size (``kv_groups.
vllm_block_size``: every group's page is then one state, ``state_pages_per_group`` 1). With
speculative decoding each state group holds ``1 + k`` states per request
(``MambaSpec.num_speculative_blocks = k``, vllm/model_executor/layers/mamba/abstract.py
``get_kv_cache_spec``; ``MambaManager.allocate_new_blocks`` adds ``k`` blocks' tokens), the
running state and one per draft position: ``states_per_seq``.

Here the frees are applied when a step's tokens are booked (vLLM applies them when the
request is next scheduled; the count over a step is the same, they only become available to
the requests scheduled before it a step earlier).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WindowGroups:
    """KV cache groups of one bounded attention type.

    Attributes:
        kind: ``sliding`` (the last ``tokens`` tokens) or ``chunked`` (the current chunk of
            ``tokens`` tokens; a multiple of the block size).
        tokens: the window or chunk length.
        num_groups: groups of this type (each holds its own pages).
    """

    kind: str
    tokens: int
    num_groups: int

    def skipped_tokens(self, num_computed: int) -> int:
        """Tokens no later query of this type attends to once ``num_computed`` are done."""
        if self.kind == "chunked":
            return num_computed // self.tokens * self.tokens
        return max(0, num_computed - self.tokens + 1)

    def tokens_skipping(self, num_skipped: int) -> int:
        """The fewest computed tokens ``n`` with ``skipped_tokens(n) >= num_skipped`` (> 0):
        ``num_skipped + window - 1`` for a sliding window, the next chunk boundary for a
        chunk."""
        if self.kind == "chunked":
            return -(-num_skipped // self.tokens) * self.tokens
        return num_skipped + self.tokens - 1


@dataclass(frozen=True, slots=True)
class KVLayout:
    """Groups of a replica's KV pool; pages are counted in the pool's blocks.

    Attributes:
        block_size: tokens per page.
        num_full_groups: groups whose pages grow with the whole context.
        windows: groups of bounded types.
        plain: one group of every layer: a block per ``block_size`` tokens, no window frees.
        num_state_groups: linear-attention groups (one state each per sequence).
        state_pages_per_group: pool pages one state takes.
        states_per_seq: states a sequence holds per state group (``1 + k`` under
            speculative decoding with ``k`` drafts, else 1).
        pages_per_row: pages every ``block_size`` tokens of new KV take (one per growing or
            window group; state groups take none).
        state_pages: pages a sequence's states hold from its first token to its finish.
    """

    block_size: int
    num_full_groups: int = 1
    windows: tuple[WindowGroups, ...] = ()
    num_state_groups: int = 0
    state_pages_per_group: int = 0
    states_per_seq: int = 1
    plain: bool = field(init=False)
    pages_per_row: int = field(init=False)
    state_pages: int = field(init=False)

    def __post_init__(self) -> None:
        # read on the engine's hot path: computed once
        state = self.num_state_groups * self.states_per_seq * self.state_pages_per_group
        plain = not self.windows and self.num_full_groups == 1 and not state
        object.__setattr__(self, "plain", plain)
        pages = self.num_full_groups + sum(w.num_groups for w in self.windows)
        object.__setattr__(self, "pages_per_row", pages)
        object.__setattr__(self, "state_pages", state)

    def _skipped_pages(self, num_computed: int) -> int:
        b = self.block_size
        return sum(w.num_groups * (w.skipped_tokens(num_computed) // b) for w in self.windows)

    def pages(self, num_tokens: int) -> int:
        """Pages a sequence holds at rest with ``num_tokens`` tokens of KV computed."""
        rows = -(-num_tokens // self.block_size)
        if self.plain:
            return rows
        state = self.state_pages if rows else 0
        return self.pages_per_row * rows - self._skipped_pages(num_tokens) + state

    def step_pages(self, num_computed: int, num_new: int) -> int:
        """Pages held while a step computes ``num_new`` tokens after ``num_computed`` (the
        new tokens' pages in every group; the windows' skipped pages freed first)."""
        rows = -(-(num_computed + num_new) // self.block_size)
        if self.plain:
            return rows
        state = self.state_pages if rows else 0
        return self.pages_per_row * rows - self._skipped_pages(num_computed) + state

    def freed(self, num_computed: int, num_new: int) -> int:
        """Pages the windows free once ``num_new`` more tokens are computed."""
        if not self.windows:
            return 0
        return self._skipped_pages(num_computed + num_new) - self._skipped_pages(num_computed)

    def peak_pages(self, num_tokens: int, step_tokens: int = 1) -> int:
        """Most pages a sequence holds on its way to ``num_tokens`` tokens of KV, computed
        in steps of at most ``step_tokens``: the full groups' pages, and each window at its
        fullest while a step runs (a sliding window ``ceil((window - 1 + step) / block) + 1``
        pages, a chunk ``ceil((chunk - 1 + step) / block)``), capped by the context, and the
        states' pages."""
        b = self.block_size
        rows = -(-num_tokens // b)
        if self.plain:
            return rows
        total = self.num_full_groups * rows + (self.state_pages if rows else 0)
        for w in self.windows:
            cap = -(-(w.tokens - 1 + step_tokens) // b) + (w.kind == "sliding")
            total += w.num_groups * min(rows, cap)
        return total
