// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {BridgeEscrow} from "../src/BridgeEscrow.sol";
import {FeeToken} from "../src/FeeToken.sol";
import {TestToken} from "../src/TestToken.sol";

/// A token whose transferFrom calls back into the escrow, to prove the guard holds.
contract ReentrantToken is TestToken {
    BridgeEscrow public escrow;

    constructor() TestToken("Reentrant", "RE") {}

    function setEscrow(BridgeEscrow escrow_) external {
        escrow = escrow_;
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        escrow.deposit(value, from);
        return super.transferFrom(from, to, value);
    }
}

contract BridgeEscrowTest is Test {
    event Deposit(uint256 indexed nonce, address indexed sender, address indexed recipient, uint256 amount);

    TestToken internal token;
    BridgeEscrow internal escrow;
    FeeToken internal feeToken;
    BridgeEscrow internal feeEscrow;

    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");

    function setUp() public {
        token = new TestToken("Bridge Test Token", "BTT");
        escrow = _escrow(token);
        feeToken = new FeeToken("Fee Token", "FEE", 100);
        feeEscrow = _escrow(feeToken);
    }

    /// An escrow of `t` with a one-validator set (the deposit side does not use it).
    function _escrow(IERC20 t) internal returns (BridgeEscrow) {
        address[] memory signers = new address[](1);
        signers[0] = makeAddr("validator");
        uint256[] memory powers = new uint256[](1);
        powers[0] = 1;
        return new BridgeEscrow(t, signers, powers);
    }

    function _fund(TestToken t, address who, address spender, uint256 amount) internal {
        t.mint(who, amount);
        vm.prank(who);
        t.approve(spender, amount);
    }

    function _fundFee(address who, uint256 amount) internal {
        feeToken.mint(who, amount);
        vm.prank(who);
        feeToken.approve(address(feeEscrow), amount);
    }

    // --- construction ---------------------------------------------------------------------

    function test_ConstructorSetsToken() public view {
        assertEq(address(escrow.token()), address(token));
        assertEq(escrow.depositCount(), 0);
    }

    function test_RevertWhen_ConstructedWithZeroToken() public {
        vm.expectRevert(BridgeEscrow.ZeroToken.selector);
        _escrow(IERC20(address(0)));
    }

    // --- deposits -------------------------------------------------------------------------

    function test_DepositForRecipient() public {
        _fund(token, alice, address(escrow), 100 ether);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Deposit(0, alice, bob, 40 ether);
        vm.prank(alice);
        uint256 nonce = escrow.deposit(40 ether, bob);

        assertEq(nonce, 0);
        assertEq(escrow.depositCount(), 1);
        assertEq(token.balanceOf(address(escrow)), 40 ether);
        assertEq(token.balanceOf(alice), 60 ether);
    }

    function test_DepositWithoutRecipientCreditsSender() public {
        _fund(token, alice, address(escrow), 5);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Deposit(0, alice, alice, 5);
        vm.prank(alice);
        uint256 nonce = escrow.deposit(5);

        assertEq(nonce, 0);
        assertEq(escrow.depositCount(), 1);
        assertEq(token.balanceOf(address(escrow)), 5);
    }

    function test_DepositEmitsExactlyOneDepositLog() public {
        _fund(token, alice, address(escrow), 7);
        vm.recordLogs();
        vm.prank(alice);
        escrow.deposit(7, bob);

        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 found;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter != address(escrow)) continue;
            found++;
            assertEq(logs[i].topics.length, 4);
            assertEq(logs[i].topics[0], keccak256("Deposit(uint256,address,address,uint256)"));
            assertEq(logs[i].topics[0], BridgeEscrow.Deposit.selector);
            assertEq(logs[i].topics[1], bytes32(uint256(0)));
            assertEq(logs[i].topics[2], bytes32(uint256(uint160(alice))));
            assertEq(logs[i].topics[3], bytes32(uint256(uint160(bob))));
            assertEq(abi.decode(logs[i].data, (uint256)), 7);
        }
        assertEq(found, 1);
    }

    function test_NoncesIncrementByOne() public {
        _fund(token, alice, address(escrow), 30);
        for (uint256 i = 0; i < 3; i++) {
            vm.expectEmit(true, true, true, true, address(escrow));
            emit Deposit(i, alice, bob, 10);
            vm.prank(alice);
            assertEq(escrow.deposit(10, bob), i);
            assertEq(escrow.depositCount(), i + 1);
        }
    }

    // --- errors ---------------------------------------------------------------------------

    function test_RevertWhen_ZeroAmount() public {
        _fund(token, alice, address(escrow), 1);
        vm.prank(alice);
        vm.expectRevert(BridgeEscrow.ZeroAmount.selector);
        escrow.deposit(0, bob);

        vm.prank(alice);
        vm.expectRevert(BridgeEscrow.ZeroAmount.selector);
        escrow.deposit(0);
        assertEq(escrow.depositCount(), 0);
    }

    function test_RevertWhen_ZeroRecipient() public {
        _fund(token, alice, address(escrow), 1);
        vm.prank(alice);
        vm.expectRevert(BridgeEscrow.ZeroRecipient.selector);
        escrow.deposit(1, address(0));
        assertEq(escrow.depositCount(), 0);
    }

    function test_RevertWhen_NothingReceived() public {
        FeeToken allFee = new FeeToken("All Fee", "ALL", 10_000);
        BridgeEscrow allFeeEscrow = _escrow(allFee);
        allFee.mint(alice, 10);
        vm.prank(alice);
        allFee.approve(address(allFeeEscrow), 10);

        vm.prank(alice);
        vm.expectRevert(BridgeEscrow.ZeroAmount.selector);
        allFeeEscrow.deposit(10, bob);
        assertEq(allFeeEscrow.depositCount(), 0);
    }

    function test_RevertWhen_AllowanceTooLow() public {
        token.mint(alice, 10);
        vm.prank(alice);
        token.approve(address(escrow), 9);

        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(escrow), 9, 10)
        );
        escrow.deposit(10, bob);
    }

    function test_RevertWhen_BalanceTooLow() public {
        token.mint(alice, 9);
        vm.prank(alice);
        token.approve(address(escrow), 10);

        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, alice, 9, 10));
        escrow.deposit(10, bob);
    }

    function test_RevertWhen_Reentered() public {
        ReentrantToken evil = new ReentrantToken();
        BridgeEscrow evilEscrow = _escrow(evil);
        evil.setEscrow(evilEscrow);
        _fund(evil, alice, address(evilEscrow), 10);

        vm.prank(alice);
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        evilEscrow.deposit(10, bob);
        assertEq(evilEscrow.depositCount(), 0);
    }

    // --- fee-on-transfer ------------------------------------------------------------------

    function test_FeeTokenCreditsWhatWasReceived() public {
        _fundFee(alice, 1000);

        vm.expectEmit(true, true, true, true, address(feeEscrow));
        emit Deposit(0, alice, bob, 990);
        vm.prank(alice);
        feeEscrow.deposit(1000, bob);

        assertEq(feeToken.balanceOf(address(feeEscrow)), 990);
        assertEq(feeToken.balanceOf(alice), 0);
    }

    function test_UnsolicitedTransfersAreNotCredited() public {
        token.mint(address(escrow), 1000);
        _fund(token, alice, address(escrow), 5);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Deposit(0, alice, bob, 5);
        vm.prank(alice);
        escrow.deposit(5, bob);
    }

    // --- fuzz -----------------------------------------------------------------------------

    /// Any sequence of deposits gets nonces 0, 1, 2, ... and the escrow holds exactly the
    /// sum of the credited amounts.
    function testFuzz_NoncesAreGaplessAndBalanceMatchesCredits(uint256 seed, uint8 count) public {
        count = uint8(bound(count, 1, 24));
        uint256 credited;
        for (uint256 i = 0; i < count; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            address sender = address(uint160(bound(r >> 96, 1, 8)) + 0x1000);
            address recipient = address(uint160(bound(r >> 160, 1, 8)) + 0x2000);
            uint256 amount = bound(r, 1, 1e30);
            _fund(token, sender, address(escrow), amount);
            bool toSelf = r & 1 == 1;

            vm.expectEmit(true, true, true, true, address(escrow));
            emit Deposit(i, sender, toSelf ? sender : recipient, amount);
            vm.prank(sender);
            uint256 nonce = toSelf ? escrow.deposit(amount) : escrow.deposit(amount, recipient);
            assertEq(nonce, i);
            assertEq(escrow.depositCount(), i + 1);
            credited += amount;
        }
        assertEq(token.balanceOf(address(escrow)), credited);
    }

    /// With a fee-on-transfer token the event and the balance carry the amount received.
    function testFuzz_FeeTokenCreditsReceivedAmount(uint256 amount, uint16 feeBps) public {
        amount = bound(amount, 1, type(uint128).max);
        feeBps = uint16(bound(feeBps, 0, 9_999));
        FeeToken t = new FeeToken("Fee", "FEE", feeBps);
        BridgeEscrow e = _escrow(t);
        t.mint(alice, amount);
        vm.prank(alice);
        t.approve(address(e), amount);

        uint256 expected = amount - (amount * feeBps) / 10_000;
        vm.assume(expected > 0);
        vm.expectEmit(true, true, true, true, address(e));
        emit Deposit(0, alice, bob, expected);
        vm.prank(alice);
        e.deposit(amount, bob);

        assertEq(t.balanceOf(address(e)), expected);
        assertEq(e.depositCount(), 1);
    }

    /// Reverted deposits never consume a nonce.
    function testFuzz_RevertedDepositsKeepNoncesGapless(uint256 amount) public {
        amount = bound(amount, 1, 1e30);
        _fund(token, alice, address(escrow), amount);

        vm.prank(alice);
        vm.expectRevert(BridgeEscrow.ZeroRecipient.selector);
        escrow.deposit(amount, address(0));
        vm.prank(alice);
        vm.expectRevert(BridgeEscrow.ZeroAmount.selector);
        escrow.deposit(0, bob);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Deposit(0, alice, bob, amount);
        vm.prank(alice);
        assertEq(escrow.deposit(amount, bob), 0);
    }
}
