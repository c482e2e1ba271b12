// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {BridgeEscrow} from "../src/BridgeEscrow.sol";
import {FeeToken} from "../src/FeeToken.sol";

/// Drives random deposits (random senders, recipients, amounts, both overloads) into an escrow
/// of a 1% fee-on-transfer token and keeps ghost totals of what should have been credited.
contract EscrowHandler is Test {
    BridgeEscrow public immutable escrow;
    FeeToken public immutable token;

    uint256 public ghostDeposits;
    uint256 public ghostCredited;
    uint256 public ghostDonated;
    bool public ghostNonceMismatch;

    constructor(BridgeEscrow escrow_, FeeToken token_) {
        escrow = escrow_;
        token = token_;
    }

    function deposit(uint256 senderSeed, uint256 recipientSeed, uint256 amount, bool toSelf) external {
        address sender = address(uint160(bound(senderSeed, 1, 16)) + 0x1000);
        address recipient = address(uint160(bound(recipientSeed, 1, 16)) + 0x2000);
        amount = bound(amount, 1, 1e30);
        uint256 received = amount - token.feeOn(amount);
        if (received == 0) return;

        token.mint(sender, amount);
        vm.startPrank(sender);
        token.approve(address(escrow), amount);
        uint256 nonce = toSelf ? escrow.deposit(amount) : escrow.deposit(amount, recipient);
        vm.stopPrank();

        if (nonce != ghostDeposits) ghostNonceMismatch = true;
        ghostDeposits += 1;
        ghostCredited += received;
    }

    /// Tokens sent to the escrow outside `deposit` must not be credited.
    function donate(uint256 amount) external {
        amount = bound(amount, 0, 1e24);
        token.mint(address(this), amount);
        assertTrue(token.transfer(address(escrow), amount));
        ghostDonated += amount - token.feeOn(amount);
    }
}

contract BridgeEscrowInvariantTest is Test {
    FeeToken internal token;
    BridgeEscrow internal escrow;
    EscrowHandler internal handler;

    function setUp() public {
        token = new FeeToken("Fee Token", "FEE", 100);
        address[] memory signers = new address[](1);
        signers[0] = makeAddr("validator");
        uint256[] memory powers = new uint256[](1);
        powers[0] = 1;
        escrow = new BridgeEscrow(token, signers, powers);
        handler = new EscrowHandler(escrow, token);
        targetContract(address(handler));
    }

    /// The nonce counter equals the number of successful deposits, and each deposit got the
    /// next nonce.
    function invariant_NoncesAreGapless() public view {
        assertEq(escrow.depositCount(), handler.ghostDeposits());
        assertFalse(handler.ghostNonceMismatch());
    }

    /// The escrow holds exactly what it credited plus what was donated outside `deposit`.
    function invariant_BalanceEqualsCredited() public view {
        assertEq(token.balanceOf(address(escrow)), handler.ghostCredited() + handler.ghostDonated());
    }
}
