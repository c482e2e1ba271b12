// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title FeeToken
/// @notice A mintable ERC20 (18 decimals, anyone can mint) that burns a fee of `feeBps`
///         basis points (rounded down) on every transfer between two accounts; mints and
///         burns are fee-free. For tests and the demo of fee-on-transfer handling.
contract FeeToken is ERC20 {
    uint256 public constant MAX_FEE_BPS = 10_000;

    /// @notice The fee in basis points: 100 is 1%.
    uint256 public immutable feeBps;

    error FeeTooHigh(uint256 feeBps);

    constructor(string memory name_, string memory symbol_, uint256 feeBps_) ERC20(name_, symbol_) {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_);
        feeBps = feeBps_;
    }

    /// @notice Mint `amount` tokens to `to`. Open to anyone.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice The fee taken when `value` tokens are transferred.
    function feeOn(uint256 value) public view returns (uint256) {
        return Math.mulDiv(value, feeBps, MAX_FEE_BPS);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 balance = balanceOf(from);
        if (balance < value) revert ERC20InsufficientBalance(from, balance, value);
        uint256 fee = feeOn(value);
        if (fee > 0) super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
