// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

import {FeeToken} from "../src/FeeToken.sol";
import {TestToken} from "../src/TestToken.sol";

contract TestTokenTest is Test {
    TestToken internal token;
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");

    function setUp() public {
        token = new TestToken("Bridge Test Token", "BTT");
    }

    function test_Metadata() public view {
        assertEq(token.name(), "Bridge Test Token");
        assertEq(token.symbol(), "BTT");
        assertEq(token.decimals(), 18);
    }

    function testFuzz_AnyoneCanMint(address minter, uint256 amount) public {
        vm.assume(minter != address(0));
        vm.expectEmit(true, true, false, true, address(token));
        emit IERC20.Transfer(address(0), bob, amount);
        vm.prank(minter);
        token.mint(bob, amount);
        assertEq(token.balanceOf(bob), amount);
        assertEq(token.totalSupply(), amount);
    }

    function testFuzz_TransferMovesFullAmount(uint256 amount) public {
        token.mint(alice, amount);
        vm.prank(alice);
        assertTrue(token.transfer(bob, amount));
        assertEq(token.balanceOf(bob), amount);
        assertEq(token.balanceOf(alice), 0);
    }
}

contract FeeTokenTest is Test {
    FeeToken internal token;
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");

    function setUp() public {
        token = new FeeToken("Fee Token", "FEE", 100);
    }

    function test_Metadata() public view {
        assertEq(token.decimals(), 18);
        assertEq(token.feeBps(), 100);
    }

    function test_RevertWhen_FeeAboveMax() public {
        vm.expectRevert(abi.encodeWithSelector(FeeToken.FeeTooHigh.selector, 10_001));
        new FeeToken("Bad", "BAD", 10_001);
    }

    function test_TransferBurnsOnePercent() public {
        token.mint(alice, 1000);
        vm.prank(alice);
        assertTrue(token.transfer(bob, 1000));
        assertEq(token.balanceOf(bob), 990);
        assertEq(token.balanceOf(alice), 0);
        assertEq(token.totalSupply(), 990);
    }

    function test_MintIsFeeFree() public {
        token.mint(alice, 1000);
        assertEq(token.balanceOf(alice), 1000);
    }

    function test_RevertWhen_BalanceTooLow() public {
        token.mint(alice, 99);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, alice, 99, 100));
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transfer(bob, 100);
    }

    function testFuzz_TransferFromCreditsAmountLessFee(uint256 amount, uint16 feeBps) public {
        amount = bound(amount, 0, type(uint256).max - 1); // max allowance is never spent
        feeBps = uint16(bound(feeBps, 0, 10_000));
        FeeToken t = new FeeToken("Fee", "FEE", feeBps);
        t.mint(alice, amount);
        vm.prank(alice);
        t.approve(address(this), amount);
        assertTrue(t.transferFrom(alice, bob, amount));

        uint256 fee = t.feeOn(amount);
        assertLe(fee, amount);
        assertEq(t.balanceOf(bob), amount - fee);
        assertEq(t.totalSupply(), amount - fee);
        assertEq(t.allowance(alice, address(this)), 0);
    }
}
