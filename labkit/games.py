"""Games: tic-tac-toe, Monte Carlo tree search with PUCT, and AlphaZero's self-play loop at toy scale.

Chapter 09c builds it by hand. A board is a tuple of 9 cells, row by row: +1 for X, -1 for O,
0 for empty; X moves first, so whose turn it is follows from the counts. Values are always from
the point of view of the player **to move**: +1 a win, 0 a draw, -1 a loss.

    >>> board = play(play(EMPTY, 4), 0)          # X in the centre, O in a corner
    >>> to_move(board), legal_moves(board)[:3]
    (1, [1, 2, 3])

An evaluator is any function board → (priors over the 9 cells, value for the player to move):
``rollout_evaluator`` (uniform priors, a random play-out: "pure" MCTS) or ``table_evaluator(net)``
(AlphaZero's policy/value network, evaluated once on every position of the game).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from functools import cache, lru_cache

import torch
import torch.nn.functional as F
from torch import nn

Board = tuple[int, ...]
Evaluator = Callable[[Board], tuple[list[float], float]]
EMPTY: Board = (0,) * 9
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
SYMBOLS = {1: "X", -1: "O", 0: "·"}


# ==================================================================================== the rules


def check_board(board: Sequence[int]) -> Board:
    """The board as a tuple, or a ValueError saying what is wrong with it."""
    board = tuple(board)
    if len(board) != 9 or any(cell not in (-1, 0, 1) for cell in board):
        raise ValueError(f"a board is 9 cells of +1 (X), -1 (O) or 0 (empty), got {board!r}")
    xs, os = board.count(1), board.count(-1)
    if xs - os not in (0, 1):
        raise ValueError(f"X moves first and the players alternate, so X has as many marks as O or one more; "
                         f"got {xs} X and {os} O in {board!r}")
    return board


def winner(board: Board) -> int:
    """+1 if X has three in a row, -1 if O has, 0 otherwise."""
    for a, b, c in LINES:
        if board[a] != 0 and board[a] == board[b] == board[c]:
            return board[a]
    return 0


def to_move(board: Board) -> int:
    """+1 (X) or -1 (O): X when both have as many marks."""
    return 1 if board.count(1) == board.count(-1) else -1


def legal_moves(board: Board) -> list[int]:
    """Empty cells, 0 … 8, when the game is not over; [] when it is."""
    if winner(board):
        return []
    return [i for i, cell in enumerate(board) if cell == 0]


def is_over(board: Board) -> bool:
    return not legal_moves(board)


def play(board: Board, move: int) -> Board:
    """The board after the player to move marks ``move`` (0 … 8, row by row)."""
    if move not in legal_moves(board):
        raise ValueError(f"move {move!r} is not legal on {render(board)!r}: the legal moves are {legal_moves(board)}")
    cells = list(board)
    cells[move] = to_move(board)
    return tuple(cells)


def result_for_mover(board: Board) -> int:
    """A finished board's result for the player who would move next: -1 if the other one just won, else 0."""
    return -1 if winner(board) else 0


def render(board: Board) -> str:
    """Three lines of X, O and ·."""
    return "\n".join(" ".join(SYMBOLS[board[3 * r + c]] for c in range(3)) for r in range(3))


@cache
def game_value(board: Board) -> int:
    """Minimax: +1 / 0 / -1 for the player to move when both sides play perfectly. Chapter 09c."""
    if is_over(board):
        return result_for_mover(board)
    return max(-game_value(play(board, move)) for move in legal_moves(board))


def perfect_moves(board: Board) -> list[int]:
    """The moves that keep minimax's value (every one of them is perfect play)."""
    best = game_value(board)
    return [move for move in legal_moves(board) if -game_value(play(board, move)) == best]


@lru_cache(maxsize=1)
def all_positions() -> tuple[Board, ...]:
    """Every position reachable from the empty board where someone still has to move (4,520)."""
    seen: set[Board] = set()
    frontier = [EMPTY]
    while frontier:
        board = frontier.pop()
        if board in seen or is_over(board):
            continue
        seen.add(board)
        frontier.extend(play(board, move) for move in legal_moves(board))
    return tuple(sorted(seen))


# ==================================================================================== players


Player = Callable[[Board], int]


def random_player(rng: random.Random) -> Player:
    """Plays any legal move, uniformly."""
    return lambda board: rng.choice(legal_moves(board))


def one_ply_player(rng: random.Random) -> Player:
    """Looks one move ahead: wins if it can, blocks the opponent's win if it must, else plays at random."""
    def move(board: Board) -> int:
        moves = legal_moves(board)
        for m in moves:                                    # a move that wins at once
            if winner(play(board, m)):
                return m
        for m in moves:                                    # a cell where the opponent would win
            cells = list(board)
            cells[m] = -to_move(board)
            if winner(tuple(cells)):
                return m
        return rng.choice(moves)
    return move


def play_game(x_player: Player, o_player: Player, board: Board = EMPTY) -> int:
    """Play to the end; the winner: +1 X, -1 O, 0 a draw."""
    while not is_over(board):
        board = play(board, (x_player if to_move(board) == 1 else o_player)(board))
    return winner(board)


def match(agent: Player, opponent: Player, games: int) -> dict[str, float]:
    """``games`` games, the agent X in the first half and O in the second: shares of win, draw, loss."""
    if games < 2 or games % 2:
        raise ValueError(f"games must be an even number ≥ 2 (each side half the time), got {games}")
    tally = {"win": 0, "draw": 0, "loss": 0}
    for g in range(games):
        agent_is_x = g < games // 2
        result = play_game(agent, opponent) if agent_is_x else -play_game(opponent, agent)
        tally["win" if result > 0 else "loss" if result < 0 else "draw"] += 1
    return {k: v / games for k, v in tally.items()}


# ==================================================================================== MCTS with PUCT


def rollout_evaluator(rng: random.Random) -> Evaluator:
    """"Pure" MCTS's evaluator: uniform priors over the legal moves; the value is one random
    play-out to the end, seen from the player to move."""
    def evaluate(board: Board) -> tuple[list[float], float]:
        moves = legal_moves(board)
        priors = [1.0 / len(moves) if i in moves else 0.0 for i in range(9)]
        mover, state = to_move(board), board
        while not is_over(state):
            state = play(state, rng.choice(legal_moves(state)))
        return priors, float(winner(state) * mover)
    return evaluate


def mcts_visits(board: Board, evaluate: Evaluator, simulations: int, *, c_puct: float = 1.5,
                noise: tuple[random.Random, float, float] | None = None) -> list[int]:
    """Monte Carlo tree search from ``board``: how often each of the 9 moves was visited.

    Each simulation walks down the tree choosing argmax Q + c_puct · P · √N_parent / (1 + N) (PUCT,
    AlphaZero's rule), evaluates the leaf it reaches (or scores a finished game), and adds the value
    to every edge on the way back, its sign flipped at each level (the players alternate).
    ``noise=(rng, alpha, fraction)`` mixes Dirichlet noise into the root's priors (self-play explores).
    Chapter 09c writes it by hand.
    """
    board = check_board(board)
    if simulations < 1:
        raise ValueError(f"simulations must be ≥ 1, got {simulations}")
    if is_over(board):
        raise ValueError(f"the game is over on this board, nothing to search:\n{render(board)}")
    priors: dict[Board, list[float]] = {}
    visits: dict[Board, list[int]] = {}
    value_sum: dict[Board, list[float]] = {}
    for _ in range(simulations):
        state, path = board, []
        while state in priors:                                   # 1. select down the known tree
            n, w, p = visits[state], value_sum[state], priors[state]
            root_n = math.sqrt(sum(n))
            move = max(legal_moves(state),
                       key=lambda a: (w[a] / n[a] if n[a] else 0.0) + c_puct * p[a] * root_n / (1 + n[a]))
            path.append((state, move))
            state = play(state, move)
            if is_over(state):
                break
        if is_over(state):                                       # 2. a finished game scores itself
            value = float(result_for_mover(state))
        else:                                                    # 2. or expand the leaf and evaluate it
            p, value = evaluate(state)
            if noise is not None and state == board:
                p = _with_dirichlet(p, legal_moves(state), *noise)
            priors[state], visits[state], value_sum[state] = list(p), [0] * 9, [0.0] * 9
        for parent, move in reversed(path):                      # 3. back up, flipping the sign
            value = -value
            visits[parent][move] += 1
            value_sum[parent][move] += value
    return visits[board]


def _with_dirichlet(priors: list[float], moves: list[int], rng: random.Random, alpha: float,
                    fraction: float) -> list[float]:
    draws = [rng.gammavariate(alpha, 1.0) for _ in moves]
    total = sum(draws) or 1.0
    mixed = list(priors)
    for move, draw in zip(moves, draws):
        mixed[move] = (1 - fraction) * priors[move] + fraction * draw / total
    return mixed


def mcts_player(evaluate: Evaluator, simulations: int, c_puct: float = 1.5) -> Player:
    """Plays the most visited move of a search (ties: the lowest cell)."""
    def move(board: Board) -> int:
        if len(legal_moves(board)) == 1:
            return legal_moves(board)[0]
        counts = mcts_visits(board, evaluate, simulations, c_puct=c_puct)
        return max(range(9), key=lambda a: (counts[a], -a))
    return move


# ==================================================================================== the network


def encode(boards: Sequence[Board]) -> torch.Tensor:
    """Boards → (B, 18): the mover's marks, then the opponent's, so the network always plays "me"."""
    b = torch.tensor(boards, dtype=torch.float32)                        # (B, 9)
    mover = torch.tensor([to_move(x) for x in boards], dtype=torch.float32)[:, None]
    mine = b * mover
    return torch.cat([(mine == 1).float(), (mine == -1).float()], dim=1)


class PolicyValueNet(nn.Module):
    """AlphaZero's network at toy scale: a shared MLP trunk, a policy head (9 move logits) and a
    value head (tanh: the expected result for the player to move). Chapter 09c trains it by self-play.

    forward(x (B, 18)) → (logits (B, 9), value (B,)).
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(18, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.policy = nn.Linear(hidden, 9)
        self.value = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.policy(h), torch.tanh(self.value(h)).squeeze(-1)


def legal_mask(boards: Sequence[Board]) -> torch.Tensor:
    """(B, 9) True where a move is legal."""
    return torch.tensor([[cell == 0 for cell in b] for b in boards])


@torch.no_grad()
def table_evaluator(net: PolicyValueNet) -> Evaluator:
    """The network evaluated once on all 4,520 positions, looked up afterwards: tic-tac-toe is small
    enough that a table is faster than calling the network inside the search (a big game could not)."""
    net.eval()
    boards = all_positions()
    logits, values = net(encode(boards))
    probs = F.softmax(logits.masked_fill(~legal_mask(boards), float("-inf")), dim=-1)
    table = {b: (p, v) for b, p, v in zip(boards, probs.tolist(), values.tolist())}
    return lambda board: table[board]


def policy_player(net: PolicyValueNet) -> Player:
    """The network alone, no search: the legal move with the highest policy logit."""
    evaluate = table_evaluator(net)
    return lambda board: max(legal_moves(board), key=lambda a: evaluate(board)[0][a])


# ==================================================================================== self-play


SYMMETRIES = tuple(
    tuple(perm) for perm in (
        (0, 1, 2, 3, 4, 5, 6, 7, 8), (6, 3, 0, 7, 4, 1, 8, 5, 2), (8, 7, 6, 5, 4, 3, 2, 1, 0),
        (2, 5, 8, 1, 4, 7, 0, 3, 6), (2, 1, 0, 5, 4, 3, 8, 7, 6), (6, 7, 8, 3, 4, 5, 0, 1, 2),
        (0, 3, 6, 1, 4, 7, 2, 5, 8), (8, 5, 2, 7, 4, 1, 6, 3, 0),
    )
)  # the 8 rotations and reflections of the square: new[i] = old[perm[i]]


def self_play_game(evaluate: Evaluator, simulations: int, rng: random.Random, *, explore_moves: int = 4,
                   alpha: float = 0.5, fraction: float = 0.25) -> list[tuple[Board, list[float], float]]:
    """One game of the agent against itself. Each move: a search (Dirichlet noise at the root), then
    a move drawn in proportion to the visits for the first ``explore_moves`` moves, the most visited
    after. Returns (board, visit shares π, result z for the player to move) per position, × 8 symmetries."""
    history: list[tuple[Board, list[float]]] = []
    board = EMPTY
    while not is_over(board):
        counts = mcts_visits(board, evaluate, simulations, noise=(rng, alpha, fraction))
        total = sum(counts)
        pi = [c / total for c in counts]
        history.append((board, pi))
        if len(history) <= explore_moves:
            move = rng.choices(range(9), weights=counts)[0]
        else:
            move = max(range(9), key=lambda a: counts[a])
        board = play(board, move)
    final = winner(board)
    examples = []
    for state, pi in history:
        z = float(final * to_move(state))
        for perm in SYMMETRIES:
            examples.append((tuple(state[j] for j in perm), [pi[j] for j in perm], z))
    return examples


def train_net(net: PolicyValueNet, examples: Sequence[tuple[Board, list[float], float]], *, steps: int,
              optimizer: torch.optim.Optimizer, batch_size: int = 128,
              generator: torch.Generator | None = None) -> float:
    """``steps`` steps of AlphaZero's loss on the examples: (z − v)² + cross-entropy(π, policy).
    Returns the last step's loss."""
    if not examples:
        raise ValueError("no examples to train on: play some self-play games first")
    x = encode([e[0] for e in examples])
    mask = legal_mask([e[0] for e in examples])
    pi = torch.tensor([e[1] for e in examples])
    z = torch.tensor([e[2] for e in examples])
    net.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        i = torch.randint(len(examples), (batch_size,), generator=generator)
        logits, v = net(x[i])
        log_p = F.log_softmax(logits.masked_fill(~mask[i], -1e9), dim=-1)
        loss = F.mse_loss(v, z[i]) - (pi[i] * log_p).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval()
    return loss.item()
