// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title BridgeEscrow
/// @notice Holds one ERC20 token for the bridge. Each deposit is numbered with a gapless nonce
///         (0, 1, 2, ...) and announced by a `Deposit` event that the validators read; the
///         amount in the event is what the escrow actually received, so fee-on-transfer
///         tokens are credited correctly. The escrow has no withdrawal path: this is the
///         deposit side of the bridge only.
contract BridgeEscrow is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice The only token this escrow accepts.
    IERC20 public immutable token;

    /// @notice Number of deposits so far; also the nonce the next deposit gets.
    uint256 public depositCount;

    /// @notice One deposit of `amount` tokens (as received) by `sender`, to be credited to
    ///         `recipient` on the other side.
    event Deposit(uint256 indexed nonce, address indexed sender, address indexed recipient, uint256 amount);

    /// @notice The amount asked for, or the amount the escrow received, is zero.
    error ZeroAmount();
    /// @notice The recipient is the zero address.
    error ZeroRecipient();
    /// @notice The token given to the constructor is the zero address.
    error ZeroToken();

    constructor(IERC20 token_) {
        if (address(token_) == address(0)) revert ZeroToken();
        token = token_;
    }

    /// @notice Deposit `amount` tokens (approved beforehand) for `recipient`.
    /// @return nonce The deposit's nonce.
    function deposit(uint256 amount, address recipient) external nonReentrant returns (uint256 nonce) {
        return _deposit(amount, recipient);
    }

    /// @notice Deposit `amount` tokens (approved beforehand) for the sender itself.
    /// @return nonce The deposit's nonce.
    function deposit(uint256 amount) external nonReentrant returns (uint256 nonce) {
        return _deposit(amount, msg.sender);
    }

    function _deposit(uint256 amount, address recipient) private returns (uint256 nonce) {
        if (amount == 0) revert ZeroAmount();
        if (recipient == address(0)) revert ZeroRecipient();

        uint256 balanceBefore = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - balanceBefore;
        if (received == 0) revert ZeroAmount();

        nonce = depositCount;
        depositCount = nonce + 1;
        emit Deposit(nonce, msg.sender, recipient, received);
    }
}
