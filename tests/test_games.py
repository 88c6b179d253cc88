"""labkit.games (chapter 09c): the rules, minimax, MCTS with PUCT (finds forced wins and blocks;
pure MCTS never loses to a random player), the players, the network's table and self-play."""
from __future__ import annotations

import random

import pytest
import torch

from labkit import games

WIN_AT_2 = (1, 1, 0, -1, -1, 0, 0, 0, 0)      # X to move: 2 wins (O also threatens 5)
BLOCK_AT_5 = (1, 0, -1, 0, 1, 0, 0, 0, -1)    # X to move: O threatens 2-5-8, X must block at 5
BLOCK_AT_0 = (0, 0, -1, 0, 1, 0, 0, 0, 1)     # O to move: X threatens 0-4-8


def test_rules():
    board = games.play(games.play(games.EMPTY, 4), 0)
    assert games.to_move(board) == 1 and games.legal_moves(board) == [1, 2, 3, 5, 6, 7, 8]
    assert games.winner((1, 1, 1, -1, -1, 0, 0, 0, 0)) == 1 and games.is_over((1, 1, 1, -1, -1, 0, 0, 0, 0))
    assert games.winner((1, -1, 1, 1, -1, -1, -1, 1, 1)) == 0 and games.is_over((1, -1, 1, 1, -1, -1, -1, 1, 1))
    assert games.render(board).splitlines()[1] == "· X ·"


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="not legal"):
        games.play(games.play(games.EMPTY, 4), 4)
    with pytest.raises(ValueError, match="X moves first"):
        games.check_board((-1, 0, 0, 0, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="9 cells"):
        games.check_board((1, 0))
    with pytest.raises(ValueError, match="game is over"):
        games.mcts_visits((1, 1, 1, -1, -1, 0, 0, 0, 0), games.rollout_evaluator(random.Random(0)), 10)
    with pytest.raises(ValueError, match="even number"):
        games.match(games.random_player(random.Random(0)), games.random_player(random.Random(1)), 3)


def test_positions_and_minimax():
    assert len(games.all_positions()) == 4520          # the known count of non-terminal reachable positions
    assert games.game_value(games.EMPTY) == 0           # tic-tac-toe is a draw
    assert games.game_value(WIN_AT_2) == 1 and games.perfect_moves(WIN_AT_2) == [2]
    assert games.perfect_moves(BLOCK_AT_5) == [5]
    assert games.game_value((0, 0, 0, 0, 1, 0, 0, 0, 0)) == 0
    assert games.game_value((0, -1, 0, 0, 1, 0, 0, 0, 0)) == 1  # O answered the centre on an edge: X to move wins


@pytest.mark.parametrize("board, move", [(WIN_AT_2, 2), (BLOCK_AT_5, 5), (BLOCK_AT_0, 0)])
def test_mcts_finds_forced_wins_and_blocks(board, move):
    for seed in range(3):
        counts = games.mcts_visits(board, games.rollout_evaluator(random.Random(seed)), 300)
        assert max(range(9), key=counts.__getitem__) == move, counts
        assert sum(counts) == 299                       # every simulation but the first (the root's expansion) backs up an edge


def test_mcts_with_a_perfect_evaluator_follows_minimax():
    def oracle(board):
        moves = games.legal_moves(board)
        return [1 / len(moves) if i in moves else 0.0 for i in range(9)], float(games.game_value(board))
    for board in games.all_positions()[::301]:
        counts = games.mcts_visits(board, oracle, 200)
        assert max(range(9), key=counts.__getitem__) in games.perfect_moves(board)


def test_pure_mcts_never_loses_to_random():
    rng = random.Random(0)
    result = games.match(games.mcts_player(games.rollout_evaluator(rng), 200), games.random_player(rng), 20)
    assert result["loss"] == 0 and result["win"] >= 0.7


def test_one_ply_player_wins_and_blocks():
    player = games.one_ply_player(random.Random(0))
    assert player(WIN_AT_2) == 2 and player(BLOCK_AT_5) == 5 and player(BLOCK_AT_0) == 0


def test_symmetries_map_lines_to_lines():
    lines = {frozenset(line) for line in games.LINES}
    assert len(set(games.SYMMETRIES)) == 8
    for perm in games.SYMMETRIES:
        inverse = [perm.index(i) for i in range(9)]
        assert {frozenset(inverse[i] for i in line) for line in lines} == lines


def test_table_evaluator_and_policy():
    torch.manual_seed(0)
    net = games.PolicyValueNet(hidden=16)
    evaluate = games.table_evaluator(net)
    for board in games.all_positions()[::97]:
        priors, value = evaluate(board)
        legal = games.legal_moves(board)
        assert abs(sum(priors) - 1) < 1e-5 and all(priors[i] == 0 for i in range(9) if i not in legal)
        assert -1 <= value <= 1
        assert games.policy_player(net)(board) in legal


def test_self_play_examples_and_a_training_step_that_lowers_the_loss():
    torch.manual_seed(0)
    net = games.PolicyValueNet(hidden=32)
    rng = random.Random(0)
    examples = games.self_play_game(games.table_evaluator(net), 10, rng)
    assert len(examples) % 8 == 0
    for board, pi, z in examples:
        assert abs(sum(pi) - 1) < 1e-9 and z in (-1.0, 0.0, 1.0)
        assert all(pi[i] == 0 for i in range(9) if board[i] != 0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    first = games.train_net(net, examples, steps=1, optimizer=optimizer, batch_size=len(examples))
    last = games.train_net(net, examples, steps=100, optimizer=optimizer, batch_size=len(examples))
    assert last < first
