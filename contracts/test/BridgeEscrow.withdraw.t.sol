// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {BridgeEscrow} from "../src/BridgeEscrow.sol";
import {TestToken} from "../src/TestToken.sol";
import {EscrowTestBase} from "./utils/EscrowTestBase.sol";

/// A token whose transfer out of the escrow calls back into it (claim or submitBatch), to prove
/// the guard holds on the withdrawal path.
contract ReentrantClaimToken is TestToken {
    BridgeEscrow public escrow;
    bytes public callback;

    constructor() TestToken("Reentrant", "RE") {}

    function arm(BridgeEscrow escrow_, bytes calldata callback_) external {
        escrow = escrow_;
        callback = callback_;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (msg.sender == address(escrow) && callback.length > 0) {
            (bool ok, bytes memory ret) = address(escrow).call(callback);
            if (!ok) {
                assembly {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
        return super.transfer(to, value);
    }
}

contract BridgeEscrowWithdrawTest is EscrowTestBase {
    event ValidatorSetUpdated(uint64 indexed nonce, address[] signers, uint256[] powers);
    event BatchSubmitted(uint64 indexed batchId, bytes32 root, uint256 total);
    event Claimed(uint64 indexed id, uint64 indexed batchId, address indexed recipient, uint256 amount);

    TestToken internal token;
    BridgeEscrow internal escrow;
    Validator[] internal valsStore;
    BridgeEscrow.ValidatorSet internal set0Store;

    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal carol = makeAddr("carol");

    function setUp() public {
        token = new TestToken("Bridge Test Token", "BTT");
        Validator[] memory v = _validators("val", 4);
        for (uint256 i = 0; i < v.length; i++) {
            valsStore.push(v[i]);
        }
        BridgeEscrow.ValidatorSet memory s = _set(0, v, _equalPowers(4, 10));
        set0Store = s;
        escrow = _newEscrow(token, s);
        _deposit(escrow, 1_000 ether);
    }

    // --- small helpers --------------------------------------------------------------------

    function _vals() internal view returns (Validator[] memory) {
        return valsStore;
    }

    function _set0() internal view returns (BridgeEscrow.ValidatorSet memory) {
        return set0Store;
    }

    function _deposit(BridgeEscrow e, uint256 amount) internal {
        token.mint(address(this), amount);
        token.approve(address(e), amount);
        e.deposit(amount, alice);
    }

    function _w(uint64 id, address recipient, uint256 amount) internal pure returns (BridgeEscrow.Withdrawal memory) {
        return BridgeEscrow.Withdrawal(id, recipient, amount);
    }

    function _three() internal view returns (BridgeEscrow.Withdrawal[] memory ws) {
        ws = new BridgeEscrow.Withdrawal[](3);
        ws[0] = _w(1, alice, 10 ether);
        ws[1] = _w(2, bob, 20 ether);
        ws[2] = _w(3, carol, 30 ether);
    }

    function _digest(uint64 batchId, bytes32 root, uint256 total, uint64 nonce) internal view returns (bytes32) {
        return _batchDigest(address(escrow), block.chainid, batchId, root, total, nonce);
    }

    function _claim(uint64 batchId, BridgeEscrow.Withdrawal memory w, bytes32[] memory tree) internal {
        escrow.claim(batchId, w, _proof(tree, _leaf(address(escrow), block.chainid, batchId, w)));
    }

    /// A second set (nonce `nonce`) of `n` fresh validators with power 5 each.
    function _otherSet(uint64 nonce, uint256 n)
        internal
        pure
        returns (Validator[] memory v, BridgeEscrow.ValidatorSet memory s)
    {
        v = _validators("next", n);
        s = _set(nonce, v, _equalPowers(n, 5));
    }

    function _rotate(BridgeEscrow.ValidatorSet memory newSet) internal {
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, newSet);
        escrow.updateValidatorSet(newSet, _set0(), _signAll(_vals(), digest));
    }

    // --- construction and formats ---------------------------------------------------------

    function test_ConstructorStoresFirstSet() public {
        BridgeEscrow.ValidatorSet memory s = _set0();
        assertEq(escrow.checkpoint(), keccak256(abi.encode(uint64(0), s.signers, s.powers)));
        assertEq(escrow.valsetNonce(), 0);
        assertEq(escrow.outstanding(), 0);

        vm.expectEmit(true, true, true, true);
        emit ValidatorSetUpdated(0, s.signers, s.powers);
        _newEscrow(token, s);
    }

    function test_RevertWhen_ConstructorSetMalformed() public {
        Validator[] memory v = _validators("val", 3);
        address[] memory a = _addrs(v);
        uint256[] memory p = _equalPowers(3, 1);

        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, new address[](0), new uint256[](0));

        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, a, _equalPowers(2, 1));

        address[] memory unsorted = _addrs(v);
        (unsorted[0], unsorted[1]) = (unsorted[1], unsorted[0]);
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, unsorted, p);

        address[] memory dup = _addrs(v);
        dup[1] = dup[0];
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, dup, p);

        address[] memory zero = _addrs(v);
        zero[0] = address(0);
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, zero, p);

        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, a, _equalPowers(3, 0));

        // Powers whose sum would overflow uint256, or reach the 2**200 cap, are refused
        // without a panic.
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, a, _powers3(1, type(uint256).max, 1));
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, a, _powers3(2 ** 255, 2 ** 255, 1));
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        new BridgeEscrow(token, a, _powers3(2 ** 199, 2 ** 199, 0));
        // just below the cap is fine
        new BridgeEscrow(token, a, _powers3(2 ** 199, 2 ** 199 - 1, 0));
    }

    function test_RevertWhen_ConstructorTokenZero() public {
        BridgeEscrow.ValidatorSet memory s = _set0();
        vm.expectRevert(BridgeEscrow.ZeroToken.selector);
        new BridgeEscrow(IERC20(address(0)), s.signers, s.powers);
    }

    /// The contract's views compute exactly what docs/withdrawals.md says (recomputed here from
    /// the spec, not from the contract).
    function test_ViewsMatchTheSpec() public view {
        BridgeEscrow.Withdrawal memory w = _w(7, bob, 123);
        assertEq(escrow.withdrawalLeaf(9, w), _leaf(address(escrow), block.chainid, 9, w));
        assertEq(escrow.batchDigest(9, bytes32(uint256(1)), 5, 3), _digest(9, bytes32(uint256(1)), 5, 3));
        (, BridgeEscrow.ValidatorSet memory s) = _otherSet(4, 3);
        assertEq(escrow.validatorSetDigest(s), _valsetDigest(address(escrow), block.chainid, s));
        assertEq(escrow.BATCH_TYPEHASH(), BATCH_TYPEHASH);
        assertEq(escrow.VALIDATOR_SET_TYPEHASH(), VALSET_TYPEHASH);

        (, string memory name, string memory version, uint256 chainId, address verifying,,) = escrow.eip712Domain();
        assertEq(name, "BridgeEscrow");
        assertEq(version, "1");
        assertEq(chainId, block.chainid);
        assertEq(verifying, address(escrow));
    }

    /// The test's tree builder matches OpenZeppelin's merkle-tree library: a StandardMerkleTree.dump()
    /// (format standard-v1, leafEncoding [address, uint256], ten leaves, so not a power of two)
    /// taken from a public fixture, node for node and index for index.
    function test_TreeBuilderMatchesOpenZeppelinVector() public pure {
        address[10] memory accounts = [
            0xFf000000000000000000000000000000000013DC,
            0xFF000000000000000000000000000000000013dd,
            0xFf000000000000000000000000000000000013dF,
            0xFf00000000000000000000000000000000001876,
            0xfF0000000000000000000000000000000000E879,
            0xFf0000000000000000000000000000000000e6f6,
            0xFF00000000000000000000000000000000017F7E,
            0xfF000000000000000000000000000000000017B3,
            0xFf000000000000000000000000000000000017b4,
            0xff000000000000000000000000000000000017B5
        ];
        uint256[10] memory treeIndex = [uint256(15), 18, 12, 13, 10, 17, 11, 9, 16, 14];
        bytes32[19] memory expected = [
            bytes32(0xfa77c123512b8d1a96eb642e97ba5813924c91d903a8b414ba6c273e9cb186a8),
            0xe9f01c18b7f5594df77d8a85ea6706c36a7af4f20953baf052c26f24649b0d69,
            0xf600243d7915a98569d643bceb700ab77996b47441375bd56f5ce1852cf3c78e,
            0x0317388807289770a9258380c114bc8a07a3423f3c1a2929ea7b9f0b1ea75aa3,
            0x2be8798f98a4f9eaefcc7eb6094523156b56740dcfcd8662b0242a732c5cc4b7,
            0x6dcfd0cd698b26806648d326861f6f4044bec8f997c51ea069a74c69b50e6897,
            0xf7c9ada898b95afe693e14db0888bbd9b37a7c191131b7915fbe35bf50e5f01b,
            0x273993308c3abf250ff7f8868fafb5dba6a2270f716b8932e0eef1cb1cd3c63f,
            0xb3a597c09e74c10ca3924eea38f1fb3cea68e9be17fdb873aebef1caf9f56440,
            0xe29ad263494c105af7b72500475d522912864c25e72f4f2e787e5890cb7d7d62,
            0xdc245c15a3d55d2822dd6d6157295473ebb9270d916bd5a6769fab50e83b4162,
            0x9c8bf0a7ef5fab223b5795c0cc5d16bdb82556697f706801cbb6e3537559b4df,
            0x99bebfa12784556b0a6c2c37bf8c7c682c25c9f9ef88bf350594a52fbbc61ab5,
            0x8b4d6b3712a65c7551f9446b578818a788f1bad79bd6144414d07580175f49fb,
            0x66daba46f046f96491fd8c3baaff0de0d78c0c7859d53412e548985210e8fd7d,
            0x41c8154967bf86572d17afe74cf6a9794d9ae8aa4406921329f4613f874258ef,
            0x2c09da6d2ec20ced7b3e302064e79a4701aea0be6ba9a23afff12f29036acaf3,
            0x21c498f30f63a10cebf1158441879ff7af0b4a4214453a91b74f631fac3f5b3b,
            0x10a9ae8051d64c7879d3373f417b6d0f543d2a6ea8136fa8a3d427ae14dd67d2
        ];
        bytes32[] memory leaves = new bytes32[](10);
        for (uint256 i = 0; i < 10; i++) {
            leaves[i] = keccak256(bytes.concat(keccak256(abi.encode(accounts[i], uint256(1e18)))));
        }
        bytes32[] memory tree = _buildTree(leaves);
        assertEq(tree.length, 19);
        for (uint256 i = 0; i < 19; i++) {
            assertEq(tree[i], expected[i]);
        }
        for (uint256 i = 0; i < 10; i++) {
            assertEq(_treeIndex(tree, leaves[i]), treeIndex[i]);
            assertTrue(MerkleProof.verify(_proofAt(tree, treeIndex[i]), tree[0], leaves[i]));
        }
    }

    // --- the happy path -------------------------------------------------------------------

    function test_SubmitBatchThenClaimEach() public {
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _buildTree(_leaves(escrow, 5, ws));
        bytes32 digest = _digest(5, tree[0], 60 ether, 0);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit BatchSubmitted(5, tree[0], 60 ether);
        escrow.submitBatch(5, tree[0], 60 ether, _set0(), _signAll(_vals(), digest));
        assertEq(escrow.batchRoots(5), tree[0]);
        assertEq(escrow.remaining(5), 60 ether);
        assertEq(escrow.outstanding(), 60 ether);

        // anyone sends the claim; the tokens go to the recipient
        for (uint256 i = 0; i < 3; i++) {
            uint256 before = token.balanceOf(ws[i].recipient);
            vm.expectEmit(true, true, true, true, address(escrow));
            emit Claimed(ws[i].id, 5, ws[i].recipient, ws[i].amount);
            vm.prank(makeAddr("relayer"));
            _claim(5, ws[i], tree);
            assertTrue(escrow.claimed(ws[i].id));
            assertEq(token.balanceOf(ws[i].recipient), before + ws[i].amount);
        }
        assertEq(escrow.remaining(5), 0);
        assertEq(escrow.outstanding(), 0);
        assertEq(token.balanceOf(address(escrow)), 1_000 ether - 60 ether);
    }

    function test_OneLeafBatchHasEmptyProof() public {
        BridgeEscrow.Withdrawal[] memory ws = new BridgeEscrow.Withdrawal[](1);
        ws[0] = _w(42, bob, 1 ether);
        bytes32[] memory tree = _submitSigned(escrow, 0, ws, _vals(), _set0());
        assertEq(tree.length, 1);
        assertEq(tree[0], escrow.withdrawalLeaf(0, ws[0]));
        escrow.claim(0, ws[0], new bytes32[](0));
        assertEq(token.balanceOf(bob), 1 ether);
    }

    function test_AbsentSignaturesAreSkipped() public {
        // 3 of 4 equal powers (30 of 40) is more than 2/3; slot 2 is empty with junk r, s
        bytes32 root = keccak256("root");
        BridgeEscrow.Signature[] memory sigs = _signMask(_vals(), 0xB, _digest(1, root, 0, 0));
        sigs[2] = BridgeEscrow.Signature(0, keccak256("junk r"), keccak256("junk s"));
        escrow.submitBatch(1, root, 0, _set0(), sigs);
        assertEq(escrow.batchRoots(1), root);
    }

    // --- signatures -----------------------------------------------------------------------

    function test_RevertWhen_SignerOutsideSet() public {
        bytes32 root = keccak256("root");
        bytes32 digest = _digest(1, root, 1, 0);
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), digest);
        Validator[] memory outsider = _validators("outsider", 1);
        sigs[1] = _signOne(outsider[0].key, digest);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 1));
        escrow.submitBatch(1, root, 1, _set0(), sigs);

        // ...even if the insiders alone would be enough: an invalid slot is never skipped
        sigs = _signMask(_vals(), 0x7, digest);
        sigs[3] = _signOne(outsider[0].key, digest);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 3));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
    }

    function test_RevertWhen_SignatureAtWrongPosition() public {
        bytes32 root = keccak256("root");
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), _digest(1, root, 1, 0));
        (sigs[0], sigs[1]) = (sigs[1], sigs[0]);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, _set0(), sigs);

        // the same signature twice (validator 0 also in slot 1) does not count twice
        sigs = _signMask(_vals(), 0x1, _digest(1, root, 1, 0));
        sigs[1] = sigs[0];
        sigs[2] = sigs[0];
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 1));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
    }

    /// A set that lists one address twice is never accepted (so one key can never fill two
    /// positions): not at construction (above) and not in an update.
    function test_RevertWhen_UpdateToSetWithDuplicateSigner() public {
        Validator[] memory v = _validators("next", 3);
        v[1] = v[0];
        BridgeEscrow.ValidatorSet memory dup = _set(1, v, _equalPowers(3, 5));
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, dup);
        vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
        escrow.updateValidatorSet(dup, _set0(), _signAll(_vals(), digest));
    }

    function test_RevertWhen_SignatureCountMismatch() public {
        bytes32 root = keccak256("root");
        BridgeEscrow.Signature[] memory all = _signAll(_vals(), _digest(1, root, 1, 0));
        BridgeEscrow.Signature[] memory short = new BridgeEscrow.Signature[](3);
        BridgeEscrow.Signature[] memory long = new BridgeEscrow.Signature[](5);
        for (uint256 i = 0; i < 4; i++) {
            if (i < 3) short[i] = all[i];
            long[i] = all[i];
        }
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.SignatureCountMismatch.selector, 3, 4));
        escrow.submitBatch(1, root, 1, _set0(), short);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.SignatureCountMismatch.selector, 5, 4));
        escrow.submitBatch(1, root, 1, _set0(), long);
    }

    function test_RevertWhen_HighS() public {
        bytes32 root = keccak256("root");
        bytes32 digest = _digest(1, root, 1, 0);
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), digest);
        BridgeEscrow.Signature memory high = _malleate(sigs[2]);
        // it is a genuine signature by validator 2 for bare ecrecover...
        assertEq(ecrecover(digest, high.v, high.r, high.s), _vals()[2].addr);
        sigs[2] = high;
        // ...but the escrow refuses the upper-half s
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 2));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
    }

    function test_RevertWhen_SignatureGarbage() public {
        bytes32 root = keccak256("root");
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), _digest(1, root, 1, 0));
        BridgeEscrow.Signature memory good = sigs[0];

        sigs[0] = BridgeEscrow.Signature(29, good.r, good.s); // v neither 27 nor 28
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, _set0(), sigs);

        sigs[0] = BridgeEscrow.Signature(good.v, bytes32(0), good.s); // r = 0: ecrecover fails
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, _set0(), sigs);

        sigs[0] = BridgeEscrow.Signature(good.v == 27 ? 28 : 27, good.r, good.s); // other key
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
    }

    // --- threshold ------------------------------------------------------------------------

    /// Powers 200, 1, 99 (total 300): exactly 2/3 (200) fails, one unit more (201) passes.
    function test_Threshold_ExactlyTwoThirdsFailsOneMoreUnitPasses() public {
        Validator[] memory v = _validators("t", 3);
        BridgeEscrow.ValidatorSet memory s = _set(0, v, _powers3(200, 1, 99));
        BridgeEscrow e = _newEscrow(token, s);
        bytes32 root = keccak256("root");
        bytes32 digest = _batchDigest(address(e), block.chainid, 1, root, 0, 0);

        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InsufficientPower.selector, 200, 300));
        e.submitBatch(1, root, 0, s, _signMask(v, 0x1, digest));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InsufficientPower.selector, 100, 300));
        e.submitBatch(1, root, 0, s, _signMask(v, 0x6, digest)); // 1 + 99
        e.submitBatch(1, root, 0, s, _signMask(v, 0x3, digest)); // 201
        assertEq(e.batchRoots(1), root);
    }

    /// Total 10 (not divisible by 3): 6 fails, 7 (the CometBFT quorum 10*2/3+1) passes.
    function test_Threshold_ShortByOneUnit() public {
        Validator[] memory v = _validators("t", 3);
        BridgeEscrow.ValidatorSet memory s = _set(0, v, _powers3(6, 1, 3));
        BridgeEscrow e = _newEscrow(token, s);
        bytes32 root = keccak256("root");
        bytes32 digest = _batchDigest(address(e), block.chainid, 1, root, 0, 0);

        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InsufficientPower.selector, 6, 10));
        e.submitBatch(1, root, 0, s, _signMask(v, 0x1, digest));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InsufficientPower.selector, 0, 10));
        e.submitBatch(1, root, 0, s, _signMask(v, 0x0, digest));
        e.submitBatch(1, root, 0, s, _signMask(v, 0x3, digest)); // 7
    }

    function test_Threshold_ValidatorSetUpdate() public {
        (, BridgeEscrow.ValidatorSet memory next) = _otherSet(1, 3);
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, next);
        // 2 of 4 equal powers = 1/2; 3 of 4 = 3/4
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InsufficientPower.selector, 20, 40));
        escrow.updateValidatorSet(next, _set0(), _signMask(_vals(), 0x5, digest));
        escrow.updateValidatorSet(next, _set0(), _signMask(_vals(), 0xE, digest));
        assertEq(escrow.valsetNonce(), 1);
    }

    /// Random sets and random signer subsets: passes iff 3 * signed > 2 * total.
    function testFuzz_Threshold(uint256 seed, uint8 size, bool small) public {
        uint256 n = bound(size, 1, 8);
        Validator[] memory v = _validators("fuzz", n);
        uint256[] memory p = new uint256[](n);
        uint256 total;
        for (uint256 i = 0; i < n; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            p[i] = small ? r % 6 : r % (2 ** 190);
            total += p[i];
        }
        if (total == 0) {
            p[0] = 1;
            total = 1;
        }
        BridgeEscrow.ValidatorSet memory s = _set(0, v, p);
        BridgeEscrow e = _newEscrow(token, s);

        uint256 mask = uint256(keccak256(abi.encode(seed, "mask")));
        uint256 signed;
        for (uint256 i = 0; i < n; i++) {
            if ((mask >> i) & 1 == 1) signed += p[i];
        }
        bytes32 root = keccak256(abi.encode(seed));
        BridgeEscrow.Signature[] memory sigs =
            _signMask(v, mask, _batchDigest(address(e), block.chainid, 1, root, 0, 0));
        if (3 * signed > 2 * total) {
            e.submitBatch(1, root, 0, s, sigs);
            assertEq(e.batchRoots(1), root);
        } else {
            vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InsufficientPower.selector, signed, total));
            e.submitBatch(1, root, 0, s, sigs);
        }
    }

    // --- domain separation ----------------------------------------------------------------

    function test_RevertWhen_BatchSignedForAnotherEscrow() public {
        BridgeEscrow other = _newEscrow(token, _set0());
        bytes32 root = keccak256("root");
        bytes32 digest = _batchDigest(address(other), block.chainid, 1, root, 1, 0);
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), digest);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
        // the signatures are fine where they belong
        _deposit(other, 1);
        other.submitBatch(1, root, 1, _set0(), sigs);
    }

    function test_RevertWhen_BatchSignedForAnotherChain() public {
        bytes32 root = keccak256("root");
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), _digest(1, root, 1, 0));
        uint256 home = block.chainid;
        vm.chainId(home + 1);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
        vm.chainId(home);
        escrow.submitBatch(1, root, 1, _set0(), sigs);
    }

    function test_RevertWhen_ValidatorSetSignedForAnotherChainOrEscrow() public {
        (, BridgeEscrow.ValidatorSet memory next) = _otherSet(1, 3);
        BridgeEscrow.Signature[] memory otherChain =
            _signAll(_vals(), _valsetDigest(address(escrow), block.chainid + 1, next));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.updateValidatorSet(next, _set0(), otherChain);
        BridgeEscrow.Signature[] memory otherEscrow =
            _signAll(_vals(), _valsetDigest(address(0xE5C0), block.chainid, next));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.updateValidatorSet(next, _set0(), otherEscrow);
    }

    /// A withdrawal's leaf is bound to the escrow, the chain and the batch id: a tree built for
    /// another escrow or chain, or a proof moved to another batch, does not verify.
    function test_RevertWhen_LeafForAnotherEscrowChainOrBatch() public {
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _submitSigned(escrow, 1, ws, _vals(), _set0());
        bytes32[] memory proof = _proof(tree, _leaf(address(escrow), block.chainid, 1, ws[0]));

        // the same tree content as batch 2 (root signed again): the leaf includes the batch id
        bytes32 digest2 = _digest(2, tree[0], 60 ether, 0);
        escrow.submitBatch(2, tree[0], 60 ether, _set0(), _signAll(_vals(), digest2));
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(2, ws[0], proof);

        // a root over leaves for another escrow / chain
        bytes32[] memory leaves = new bytes32[](2);
        leaves[0] = _leaf(address(0xE5C0), block.chainid, 3, ws[1]);
        leaves[1] = _leaf(address(escrow), block.chainid + 1, 3, ws[2]);
        bytes32[] memory foreign = _buildTree(leaves);
        escrow.submitBatch(3, foreign[0], 50 ether, _set0(), _signAll(_vals(), _digest(3, foreign[0], 50 ether, 0)));
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(3, ws[1], _proof(foreign, leaves[0]));
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(3, ws[2], _proof(foreign, leaves[1]));
    }

    /// A set-update signature never counts for a batch and the other way round (type hashes).
    function test_RevertWhen_SignatureOfOneKindUsedForTheOther() public {
        (, BridgeEscrow.ValidatorSet memory next) = _otherSet(1, 3);
        BridgeEscrow.Signature[] memory valsetSigs =
            _signAll(_vals(), _valsetDigest(address(escrow), block.chainid, next));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, _checkpoint(next), 0, _set0(), valsetSigs);

        bytes32 root = keccak256("root");
        BridgeEscrow.Signature[] memory batchSigs = _signAll(_vals(), _digest(1, root, 0, 0));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.updateValidatorSet(next, _set0(), batchSigs);
    }

    // --- validator-set rotation -----------------------------------------------------------

    function test_UpdateValidatorSet() public {
        (Validator[] memory v, BridgeEscrow.ValidatorSet memory next) = _otherSet(1, 3);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ValidatorSetUpdated(1, next.signers, next.powers);
        vm.prank(makeAddr("anyone"));
        _rotate(next);
        assertEq(escrow.checkpoint(), _checkpoint(next));
        assertEq(escrow.valsetNonce(), 1);

        // the new set now signs batches
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _submitSigned(escrow, 1, ws, v, next);
        _claim(1, ws[1], tree);
        assertEq(token.balanceOf(bob), 20 ether);
    }

    function test_RevertWhen_BatchSignedByStaleValidatorSet() public {
        bytes32 root = keccak256("root");
        // signed by set 0 under nonce 0, not yet submitted...
        BridgeEscrow.Signature[] memory oldSigs = _signAll(_vals(), _digest(1, root, 1, 0));
        // ...then the set rotates to nonce 1
        (Validator[] memory v, BridgeEscrow.ValidatorSet memory next) = _otherSet(1, 4);
        _rotate(next);

        // presenting the old set: it is no longer the checkpoint
        vm.expectRevert(BridgeEscrow.IncorrectCheckpoint.selector);
        escrow.submitBatch(1, root, 1, _set0(), oldSigs);
        // old keys signing under the new nonce do not help either
        BridgeEscrow.Signature[] memory oldKeysNewNonce = _signAll(_vals(), _digest(1, root, 1, 1));
        vm.expectRevert(BridgeEscrow.IncorrectCheckpoint.selector);
        escrow.submitBatch(1, root, 1, _set0(), oldKeysNewNonce);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, next, oldKeysNewNonce);
        // the new keys' signatures over the old nonce do not match the current nonce
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.submitBatch(1, root, 1, next, _signAll(v, _digest(1, root, 1, 0)));

        // re-signed by the current set: accepted
        escrow.submitBatch(1, root, 1, next, _signAll(v, _digest(1, root, 1, 1)));
    }

    function test_RevertWhen_UpdateNonceNotAbove() public {
        (, BridgeEscrow.ValidatorSet memory same) = _otherSet(0, 3);
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, same);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.StaleValidatorSetNonce.selector, 0, 0));
        escrow.updateValidatorSet(same, _set0(), _signAll(_vals(), digest));

        // after rotating to nonce 2, neither nonce 2 again nor nonce 1 passes
        (Validator[] memory v, BridgeEscrow.ValidatorSet memory two) = _otherSet(2, 3);
        _rotate(two);
        for (uint64 nonce = 1; nonce <= 2; nonce++) {
            BridgeEscrow.ValidatorSet memory back = _set(nonce, _vals(), _equalPowers(4, 10));
            bytes32 d = _valsetDigest(address(escrow), block.chainid, back);
            vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.StaleValidatorSetNonce.selector, nonce, 2));
            escrow.updateValidatorSet(back, two, _signAll(v, d));
        }
        // replaying the applied update (with the old set as current) fails on the checkpoint
        vm.expectRevert(BridgeEscrow.IncorrectCheckpoint.selector);
        escrow.updateValidatorSet(two, _set0(), _signAll(_vals(), _valsetDigest(address(escrow), block.chainid, two)));
    }

    function test_RevertWhen_NonceJumpTooLarge() public {
        (, BridgeEscrow.ValidatorSet memory far) = _otherSet(1_000_001, 3);
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, far);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.NonceJumpTooLarge.selector, 1_000_001, 0));
        escrow.updateValidatorSet(far, _set0(), _signAll(_vals(), digest));

        (, BridgeEscrow.ValidatorSet memory edge) = _otherSet(1_000_000, 3);
        _rotate(edge);
        assertEq(escrow.valsetNonce(), 1_000_000);
    }

    function test_RevertWhen_UpdateSignedByNewSet() public {
        (Validator[] memory v, BridgeEscrow.ValidatorSet memory next) = _otherSet(1, 4);
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, next);
        // the new set's signatures against the current set's positions
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.InvalidSignature.selector, 0));
        escrow.updateValidatorSet(next, _set0(), _signAll(v, digest));
        // or the new set presented as the current one
        vm.expectRevert(BridgeEscrow.IncorrectCheckpoint.selector);
        escrow.updateValidatorSet(next, next, _signAll(v, digest));
        assertEq(escrow.valsetNonce(), 0);
    }

    function test_RevertWhen_UpdateToMalformedSet() public {
        Validator[] memory v = _validators("next", 3);
        BridgeEscrow.ValidatorSet[] memory bad = new BridgeEscrow.ValidatorSet[](5);
        bad[0] = BridgeEscrow.ValidatorSet(1, new address[](0), new uint256[](0));
        bad[1] = BridgeEscrow.ValidatorSet(1, _addrs(v), _equalPowers(2, 5));
        bad[2] = _set(1, v, _equalPowers(3, 0));
        address[] memory unsorted = _addrs(v);
        (unsorted[1], unsorted[2]) = (unsorted[2], unsorted[1]);
        bad[3] = BridgeEscrow.ValidatorSet(1, unsorted, _equalPowers(3, 5));
        address[] memory zero = _addrs(v);
        zero[0] = address(0);
        bad[4] = BridgeEscrow.ValidatorSet(1, zero, _equalPowers(3, 5));
        for (uint256 i = 0; i < bad.length; i++) {
            bytes32 digest = _valsetDigest(address(escrow), block.chainid, bad[i]);
            vm.expectRevert(BridgeEscrow.MalformedValidatorSet.selector);
            escrow.updateValidatorSet(bad[i], _set0(), _signAll(_vals(), digest));
        }
    }

    function test_RevertWhen_CurrentSetDoesNotMatchCheckpoint() public {
        BridgeEscrow.ValidatorSet memory lie = _set0();
        lie.powers[3] = 1000; // claims validator 3 alone holds > 2/3
        bytes32 root = keccak256("root");
        vm.expectRevert(BridgeEscrow.IncorrectCheckpoint.selector);
        escrow.submitBatch(1, root, 1, lie, _signMask(_vals(), 0x8, _digest(1, root, 1, 0)));
    }

    // --- batches --------------------------------------------------------------------------

    function test_RevertWhen_ZeroRoot() public {
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), _digest(1, bytes32(0), 0, 0));
        vm.expectRevert(BridgeEscrow.ZeroRoot.selector);
        escrow.submitBatch(1, bytes32(0), 0, _set0(), sigs);
    }

    function test_RevertWhen_BatchAlreadySubmitted() public {
        _submitSigned(escrow, 1, _three(), _vals(), _set0());
        bytes32 root = keccak256("another root");
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), _digest(1, root, 1, 0));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.BatchAlreadySubmitted.selector, 1));
        escrow.submitBatch(1, root, 1, _set0(), sigs);
    }

    function test_RevertWhen_EscrowUnderfunded() public {
        bytes32 root = keccak256("root");
        uint256 balance = token.balanceOf(address(escrow));
        BridgeEscrow.Signature[] memory sigs = _signAll(_vals(), _digest(1, root, balance + 1, 0));
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.EscrowUnderfunded.selector, balance, 0, balance + 1));
        escrow.submitBatch(1, root, balance + 1, _set0(), sigs);

        // a total near 2**256 does not overflow the check
        uint256 huge = type(uint256).max;
        sigs = _signAll(_vals(), _digest(1, root, huge, 0));
        _submitSigned(escrow, 7, _three(), _vals(), _set0()); // outstanding 60
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.EscrowUnderfunded.selector, balance, 60 ether, huge));
        escrow.submitBatch(1, root, huge, _set0(), sigs);

        // outstanding counts: balance - 60 fits, one more does not
        bytes32 digestFits = _digest(2, root, balance - 60 ether, 0);
        bytes32 digestOver = _digest(3, root, balance - 60 ether + 1, 0);
        vm.expectRevert(
            abi.encodeWithSelector(BridgeEscrow.EscrowUnderfunded.selector, balance, 60 ether, balance - 60 ether + 1)
        );
        escrow.submitBatch(3, root, balance - 60 ether + 1, _set0(), _signAll(_vals(), digestOver));
        escrow.submitBatch(2, root, balance - 60 ether, _set0(), _signAll(_vals(), digestFits));
        assertEq(escrow.outstanding(), balance);
    }

    // --- claims ---------------------------------------------------------------------------

    function test_RevertWhen_ClaimReplayed() public {
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _submitSigned(escrow, 1, ws, _vals(), _set0());
        _claim(1, ws[0], tree);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.AlreadyClaimed.selector, 1));
        _claim(1, ws[0], tree);

        // the same withdrawal id in another batch is not paid again either
        BridgeEscrow.Withdrawal[] memory again = new BridgeEscrow.Withdrawal[](1);
        again[0] = ws[0];
        bytes32[] memory tree2 = _submitSigned(escrow, 2, again, _vals(), _set0());
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.AlreadyClaimed.selector, 1));
        _claim(2, ws[0], tree2);
        assertEq(token.balanceOf(alice), 10 ether);
    }

    function test_RevertWhen_UnknownBatch() public {
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.UnknownBatch.selector, 9));
        escrow.claim(9, _w(1, alice, 1), new bytes32[](0));
    }

    function test_RevertWhen_ProofForged() public {
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _submitSigned(escrow, 1, ws, _vals(), _set0());
        bytes32[] memory proof = _proof(tree, _leaf(address(escrow), block.chainid, 1, ws[1]));

        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, _w(2, bob, 20 ether + 1), proof); // more money
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, _w(2, carol, 20 ether), proof); // another recipient
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, _w(4, bob, 20 ether), proof); // another id

        bytes32[] memory tampered = new bytes32[](proof.length);
        for (uint256 i = 0; i < proof.length; i++) {
            tampered[i] = proof[i];
        }
        tampered[0] = bytes32(uint256(tampered[0]) ^ 1);
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, ws[1], tampered);

        // a proof that is just the root, or empty
        bytes32[] memory rootOnly = new bytes32[](1);
        rootOnly[0] = tree[0];
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, ws[1], rootOnly);
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, ws[1], new bytes32[](0));

        assertFalse(escrow.claimed(2));
        escrow.claim(1, ws[1], proof);
    }

    /// An inner node of the tree presented as if it were a leaf, with the shorter proof from
    /// that node up: OpenZeppelin's MerkleProof alone would accept the node, but a claim is
    /// a withdrawal whose leaf is a double hash of a 192-byte encoding, which cannot be made
    /// to equal a node; reading the node's 64-byte preimage (its two children) as a withdrawal
    /// fails too.
    function test_RevertWhen_InnerNodePresentedAsLeaf() public {
        BridgeEscrow.Withdrawal[] memory ws = new BridgeEscrow.Withdrawal[](4);
        for (uint64 i = 0; i < 4; i++) {
            ws[i] = _w(10 + i, makeAddr(string.concat("r", vm.toString(uint256(i)))), uint256(i + 1) * 1 ether);
        }
        bytes32[] memory tree = _submitSigned(escrow, 1, ws, _vals(), _set0());
        // 4 leaves: tree[1] = hash(tree[3], tree[4]) is an inner node, its proof is [tree[2]]
        bytes32[] memory shortProof = new bytes32[](1);
        shortProof[0] = tree[2];
        assertTrue(MerkleProof.verify(shortProof, tree[0], tree[1]));

        (bytes32 a, bytes32 b) = tree[3] < tree[4] ? (tree[3], tree[4]) : (tree[4], tree[3]);
        BridgeEscrow.Withdrawal memory fromChildren = _w(uint64(uint256(a)), address(uint160(uint256(b))), uint256(a));
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, fromChildren, shortProof);
        BridgeEscrow.Withdrawal memory fromNode =
            _w(uint64(uint256(tree[1])), address(uint160(uint256(tree[1]))), uint256(tree[1]));
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(1, fromNode, shortProof);

        // a single-hashed leaf (not the standard double hash) does not verify either
        bytes32 single =
            keccak256(abi.encode(ws[0].id, ws[0].recipient, ws[0].amount, address(escrow), block.chainid, uint64(1)));
        bytes32[] memory one = new bytes32[](1);
        one[0] = single;
        bytes32[] memory singleTree = _buildTree(one);
        escrow.submitBatch(2, singleTree[0], 1 ether, _set0(), _signAll(_vals(), _digest(2, singleTree[0], 1 ether, 0)));
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(2, ws[0], new bytes32[](0));
    }

    /// Validators signed a root whose leaves add up to more than the signed total: claims stop
    /// at the total, so the escrow never pays more than it set aside for the batch.
    function test_RevertWhen_ClaimsExceedSignedTotal() public {
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _buildTree(_leaves(escrow, 1, ws));
        escrow.submitBatch(1, tree[0], 35 ether, _set0(), _signAll(_vals(), _digest(1, tree[0], 35 ether, 0)));
        _claim(1, ws[0], tree); // 10, 25 left
        _claim(1, ws[1], tree); // 20, 5 left
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.ClaimExceedsBatch.selector, 1, 5 ether, 30 ether));
        _claim(1, ws[2], tree);
        assertEq(escrow.outstanding(), 5 ether);
    }

    function test_RevertWhen_ClaimReentered() public {
        ReentrantClaimToken evil = new ReentrantClaimToken();
        BridgeEscrow e = _newEscrow(evil, _set0());
        evil.mint(address(this), 100);
        evil.approve(address(e), 100);
        e.deposit(100, alice);

        BridgeEscrow.Withdrawal[] memory ws = new BridgeEscrow.Withdrawal[](2);
        ws[0] = _w(1, alice, 10);
        ws[1] = _w(2, bob, 20);
        bytes32[] memory tree = _submitSigned(e, 1, ws, _vals(), _set0());
        bytes32[] memory proof1 = _proof(tree, _leaf(address(e), block.chainid, 1, ws[1]));
        bytes32[] memory proof0 = _proof(tree, _leaf(address(e), block.chainid, 1, ws[0]));

        // the transfer of claim 0 tries to claim 1
        evil.arm(e, abi.encodeCall(BridgeEscrow.claim, (1, ws[1], proof1)));
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        e.claim(1, ws[0], proof0);

        // ...or to submit a batch while the balance has not dropped yet
        bytes32 root = keccak256("root");
        bytes memory submit = abi.encodeCall(
            BridgeEscrow.submitBatch,
            (2, root, 80, _set0(), _signAll(_vals(), _batchDigest(address(e), block.chainid, 2, root, 80, 0)))
        );
        evil.arm(e, submit);
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        e.claim(1, ws[0], proof0);

        evil.arm(e, "");
        e.claim(1, ws[0], proof0);
        assertEq(evil.balanceOf(alice), 10);
    }

    /// Random trees of 1 to 33 withdrawals: every withdrawal is claimable once with its proof,
    /// in any order, and not with another's proof or a changed amount.
    function testFuzz_ClaimRandomTree(uint256 seed, uint8 size) public {
        uint256 n = bound(size, 1, 33);
        // casting to 'uint64' is safe because seed >> 192 has 64 bits
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 batchId = uint64(seed >> 192);
        BridgeEscrow.Withdrawal[] memory ws = new BridgeEscrow.Withdrawal[](n);
        uint64 firstId = uint64(bound(seed >> 128, 0, type(uint64).max - 64));
        for (uint256 i = 0; i < n; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            address recipient = address(uint160(bound(r >> 96, 1, 64)) + 0x5000);
            // casting to 'uint64' is safe because i < 34
            // forge-lint: disable-next-line(unsafe-typecast)
            ws[i] = _w(firstId + uint64(i), recipient, bound(r, 0, 10 ether));
        }
        uint256 total = _sum(ws);
        _deposit(escrow, total);
        uint256 escrowBefore = token.balanceOf(address(escrow));
        bytes32[] memory tree = _submitSigned(escrow, batchId, ws, _vals(), _set0());
        assertEq(escrow.outstanding(), total);

        // claim in a random order (Fisher-Yates over indices)
        uint256[] memory order = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            order[i] = i;
        }
        for (uint256 i = n; i > 1; i--) {
            uint256 j = uint256(keccak256(abi.encode(seed, "order", i))) % i;
            (order[i - 1], order[j]) = (order[j], order[i - 1]);
        }
        for (uint256 k = 0; k < n; k++) {
            _claimChecked(batchId, tree, ws[order[k]], ws[order[(k + 1) % n]]);
        }
        assertEq(escrow.remaining(batchId), 0);
        assertEq(escrow.outstanding(), 0);
        assertEq(token.balanceOf(address(escrow)), escrowBefore - total);
    }

    /// Claim `w` after checking that `other`'s proof and a changed amount do not pass, and
    /// that a second claim fails.
    function _claimChecked(
        uint64 batchId,
        bytes32[] memory tree,
        BridgeEscrow.Withdrawal memory w,
        BridgeEscrow.Withdrawal memory other
    ) internal {
        bytes32[] memory proof = _proof(tree, _leaf(address(escrow), block.chainid, batchId, w));
        bytes32[] memory otherProof = _proof(tree, _leaf(address(escrow), block.chainid, batchId, other));
        if (keccak256(abi.encode(otherProof)) != keccak256(abi.encode(proof))) {
            vm.expectRevert(BridgeEscrow.InvalidProof.selector);
            escrow.claim(batchId, w, otherProof);
        }
        vm.expectRevert(BridgeEscrow.InvalidProof.selector);
        escrow.claim(batchId, _w(w.id, w.recipient, w.amount + 1), proof);

        uint256 before = token.balanceOf(w.recipient);
        escrow.claim(batchId, w, proof);
        assertEq(token.balanceOf(w.recipient), before + w.amount);
        vm.expectRevert(abi.encodeWithSelector(BridgeEscrow.AlreadyClaimed.selector, w.id));
        escrow.claim(batchId, w, proof);
    }

    /// Logs are what the claims listener reads: one Claimed log, topics and data as declared.
    function test_ClaimEmitsOneClaimedLog() public {
        BridgeEscrow.Withdrawal[] memory ws = _three();
        bytes32[] memory tree = _submitSigned(escrow, 4, ws, _vals(), _set0());
        vm.recordLogs();
        _claim(4, ws[2], tree);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 found;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter != address(escrow)) continue;
            found++;
            assertEq(logs[i].topics[0], keccak256("Claimed(uint64,uint64,address,uint256)"));
            assertEq(logs[i].topics[1], bytes32(uint256(3)));
            assertEq(logs[i].topics[2], bytes32(uint256(4)));
            assertEq(logs[i].topics[3], bytes32(uint256(uint160(carol))));
            assertEq(abi.decode(logs[i].data, (uint256)), 30 ether);
        }
        assertEq(found, 1);
    }
}
