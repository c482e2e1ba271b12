// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {BridgeEscrow} from "../src/BridgeEscrow.sol";
import {TestToken} from "../src/TestToken.sol";
import {EscrowTestBase} from "./utils/EscrowTestBase.sol";

/// Plays an honest ledger and its validators against the escrow (deposits, signed batches of
/// withdrawals from what was deposited, claims, validator-set rotations) and, alongside, an
/// attacker (replayed and forged claims, batches signed with too little power, by a stale
/// set, or promising more than the escrow holds). The attacker's calls must all revert; the
/// handler itself never reverts (fail_on_revert), it records any unexpected success instead.
contract WithdrawalHandler is EscrowTestBase {
    struct Pending {
        uint64 batchId;
        BridgeEscrow.Withdrawal w;
    }

    BridgeEscrow public immutable escrow;
    TestToken public immutable token;

    Validator[] internal vals;
    BridgeEscrow.ValidatorSet internal current;
    Validator[] internal staleVals;
    BridgeEscrow.ValidatorSet internal stale;
    bool internal hasStale;

    mapping(uint64 batchId => bytes32[] tree) internal trees;
    uint64[] public batchIds;
    mapping(uint64 batchId => uint256 total) public ghostBatchTotal;
    mapping(uint64 batchId => uint256 paid) public ghostBatchPaid;
    Pending[] internal pending;
    Pending[] internal paid;
    uint64 internal nextBatchId = 1;
    uint64 internal nextWithdrawalId = 1;

    uint256 public ghostIn; // deposited (the token takes no fee)
    uint256 public ghostBatched; // debited on the ledger into batches
    uint256 public ghostPromised; // totals of accepted batches
    uint256 public ghostOut; // paid by claims
    mapping(address recipient => uint256 amount) public ghostPaidTo;
    address[] public recipients;
    uint256 public ghostClaims;
    uint256 public ghostRotations;
    bool public ghostUnexpectedSuccess;
    bool public ghostWrongError;
    uint256 public ghostRefused;

    constructor(
        BridgeEscrow escrow_,
        TestToken token_,
        Validator[] memory vals_,
        BridgeEscrow.ValidatorSet memory set
    ) {
        escrow = escrow_;
        token = token_;
        for (uint256 i = 0; i < vals_.length; i++) {
            vals.push(vals_[i]);
        }
        current = set;
        for (uint160 i = 1; i <= 8; i++) {
            recipients.push(address(0xBEEF0000 + i));
        }
    }

    // --- honest side ----------------------------------------------------------------------

    function deposit(uint256 senderSeed, uint256 amount) external {
        address sender = address(uint160(bound(senderSeed, 1, 8)) + 0x1000);
        amount = bound(amount, 1, 1e24);
        token.mint(sender, amount);
        vm.startPrank(sender);
        token.approve(address(escrow), amount);
        escrow.deposit(amount, sender);
        vm.stopPrank();
        ghostIn += amount;
    }

    /// The ledger closes a batch of 1 to 6 withdrawals out of what is left to withdraw, the
    /// validators sign it (a random subset holding more than 2/3), a relayer submits it.
    function submitBatch(uint256 seed, uint256 count) external {
        uint256 available = ghostIn - ghostBatched;
        if (available == 0) return;
        count = bound(count, 1, 6);
        uint64 batchId = nextBatchId++;
        BridgeEscrow.Withdrawal[] memory ws = new BridgeEscrow.Withdrawal[](count);
        for (uint256 i = 0; i < count; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            ws[i] = BridgeEscrow.Withdrawal(
                nextWithdrawalId++, recipients[r % recipients.length], bound(r >> 8, 0, available / count)
            );
        }
        uint256 total = _sum(ws);
        bytes32[] memory tree = _buildTree(_leaves(escrow, batchId, ws));
        bytes32 digest = _batchDigest(address(escrow), block.chainid, batchId, tree[0], total, current.nonce);
        escrow.submitBatch(batchId, tree[0], total, current, _signEnough(seed, digest));

        ghostBatched += total;
        ghostPromised += total;
        ghostBatchTotal[batchId] = total;
        batchIds.push(batchId);
        trees[batchId] = tree;
        for (uint256 i = 0; i < count; i++) {
            pending.push(Pending(batchId, ws[i]));
        }
    }

    /// Anyone claims one pending withdrawal.
    function claim(uint256 seed) external {
        if (pending.length == 0) return;
        uint256 k = seed % pending.length;
        _claimAt(k);
    }

    /// The validators hand over to a random new set (1 to 8 of a pool of 8 keys, powers 1 to
    /// 100), with a nonce 1 to 3 above the current one.
    function rotate(uint256 seed) external {
        Validator[] memory pool = _validators("pool", 8);
        uint256 mask = (seed % 255) + 1; // non-empty subset
        uint256 n;
        for (uint256 i = 0; i < 8; i++) {
            if ((mask >> i) & 1 == 1) n++;
        }
        Validator[] memory next = new Validator[](n);
        uint256[] memory powers = new uint256[](n);
        uint256 j;
        for (uint256 i = 0; i < 8; i++) {
            if ((mask >> i) & 1 == 1) {
                next[j] = pool[i];
                powers[j] = (uint256(keccak256(abi.encode(seed, i))) % 100) + 1;
                j++;
            }
        }
        // casting to 'uint64' is safe because the value is at most 3
        // forge-lint: disable-next-line(unsafe-typecast)
        BridgeEscrow.ValidatorSet memory nextSet = _set(current.nonce + 1 + uint64((seed >> 8) % 3), next, powers);
        bytes32 digest = _valsetDigest(address(escrow), block.chainid, nextSet);
        escrow.updateValidatorSet(nextSet, current, _signEnough(seed >> 16, digest));

        delete staleVals;
        for (uint256 i = 0; i < vals.length; i++) {
            staleVals.push(vals[i]);
        }
        stale = current;
        hasStale = true;
        delete vals;
        for (uint256 i = 0; i < n; i++) {
            vals.push(next[i]);
        }
        current = nextSet;
        ghostRotations++;
    }

    // --- attacker side --------------------------------------------------------------------

    /// A paid withdrawal claimed again, in its own batch.
    function replayClaim(uint256 seed) external {
        if (paid.length == 0) return;
        Pending memory p = paid[seed % paid.length];
        bytes32[] memory proof = _proof(trees[p.batchId], _leaf(address(escrow), block.chainid, p.batchId, p.w));
        try escrow.claim(p.batchId, p.w, proof) {
            ghostUnexpectedSuccess = true;
        } catch (bytes memory err) {
            _expectError(err, BridgeEscrow.AlreadyClaimed.selector);
        }
    }

    /// A pending withdrawal with a changed amount or recipient, or in another batch.
    function forgeClaim(uint256 seed) external {
        if (pending.length == 0) return;
        Pending memory p = pending[seed % pending.length];
        bytes32[] memory proof = _proof(trees[p.batchId], _leaf(address(escrow), block.chainid, p.batchId, p.w));
        BridgeEscrow.Withdrawal memory forged = p.w;
        uint64 batchId = p.batchId;
        uint256 kind = (seed >> 8) % 3;
        if (kind == 0) forged.amount += 1 + (seed >> 16) % 1e18;
        else if (kind == 1) forged.recipient = address(uint160(uint256(keccak256(abi.encode(seed)))));
        else batchId = batchIds[(seed >> 16) % batchIds.length];
        if (kind == 2 && batchId == p.batchId) return;
        try escrow.claim(batchId, forged, proof) {
            ghostUnexpectedSuccess = true;
        } catch (bytes memory err) {
            _expectError(err, BridgeEscrow.InvalidProof.selector);
        }
    }

    /// A batch that must be refused: signed with at most 2/3 of the power, signed by the
    /// previous set, or promising more than the escrow holds beyond what it owes.
    function rogueBatch(uint256 seed, uint256 total) external {
        uint64 batchId = nextBatchId++; // never reused, whatever happens
        bytes32 root = keccak256(abi.encode("rogue", seed));
        uint256 kind = seed % 3;
        BridgeEscrow.ValidatorSet memory signingSet = current;
        BridgeEscrow.Signature[] memory sigs;
        if (kind == 0) {
            total = bound(total, 0, ghostIn);
            sigs = _signTooFew(
                seed >> 8, _batchDigest(address(escrow), block.chainid, batchId, root, total, current.nonce)
            );
        } else if (kind == 1) {
            if (!hasStale) return;
            total = bound(total, 0, ghostIn);
            signingSet = stale;
            Validator[] memory old = staleVals;
            bytes32 digest = _batchDigest(address(escrow), block.chainid, batchId, root, total, stale.nonce);
            sigs = _signMask(old, type(uint256).max, digest);
        } else {
            uint256 headroom = token.balanceOf(address(escrow)) - escrow.outstanding();
            if (headroom == type(uint256).max) return;
            total = bound(total, headroom + 1, type(uint256).max);
            sigs = _signEnough(
                seed >> 8, _batchDigest(address(escrow), block.chainid, batchId, root, total, current.nonce)
            );
        }
        bytes4 expected = kind == 0
            ? BridgeEscrow.InsufficientPower.selector
            : kind == 1 ? BridgeEscrow.IncorrectCheckpoint.selector : BridgeEscrow.EscrowUnderfunded.selector;
        try escrow.submitBatch(batchId, root, total, signingSet, sigs) {
            ghostUnexpectedSuccess = true;
        } catch (bytes memory err) {
            _expectError(err, expected);
        }
    }

    // --- end of a run ---------------------------------------------------------------------

    /// Claims everything still pending.
    function drain() external {
        while (pending.length > 0) {
            _claimAt(pending.length - 1);
        }
    }

    // --- helpers --------------------------------------------------------------------------

    /// An attack must fail for the reason it targets, not by accident.
    function _expectError(bytes memory err, bytes4 expected) internal {
        // casting to 'bytes4' is intended: it takes the error selector
        // forge-lint: disable-next-line(unsafe-typecast)
        if (err.length < 4 || bytes4(err) != expected) ghostWrongError = true;
        ghostRefused++;
    }

    function _claimAt(uint256 k) internal {
        Pending memory p = pending[k];
        bytes32[] memory proof = _proof(trees[p.batchId], _leaf(address(escrow), block.chainid, p.batchId, p.w));
        uint256 before = token.balanceOf(address(escrow));
        vm.prank(address(uint160(uint256(keccak256(abi.encode(k, "relayer"))))));
        escrow.claim(p.batchId, p.w, proof);
        uint256 out = before - token.balanceOf(address(escrow));
        ghostOut += out;
        ghostPaidTo[p.w.recipient] += out;
        ghostBatchPaid[p.batchId] += out;
        ghostClaims++;
        paid.push(p);
        pending[k] = pending[pending.length - 1];
        pending.pop();
    }

    function _power(uint256 mask) internal view returns (uint256 signed, uint256 total) {
        for (uint256 i = 0; i < current.powers.length; i++) {
            total += current.powers[i];
            if ((mask >> i) & 1 == 1) signed += current.powers[i];
        }
    }

    /// A random subset of the current validators, grown until it holds more than 2/3.
    function _signEnough(uint256 seed, bytes32 digest) internal view returns (BridgeEscrow.Signature[] memory) {
        uint256 mask = uint256(keccak256(abi.encode(seed, "enough")));
        (uint256 signed, uint256 total) = _power(mask);
        for (uint256 i = 0; 3 * signed <= 2 * total; i++) {
            mask |= 2 ** i;
            (signed, total) = _power(mask);
        }
        return _signMask(vals, mask, digest);
    }

    /// A random subset of the current validators, shrunk until it holds at most 2/3.
    function _signTooFew(uint256 seed, bytes32 digest) internal view returns (BridgeEscrow.Signature[] memory) {
        uint256 mask = uint256(keccak256(abi.encode(seed, "few")));
        (uint256 signed, uint256 total) = _power(mask);
        for (uint256 i = 0; 3 * signed > 2 * total; i++) {
            mask &= ~(2 ** i);
            (signed, total) = _power(mask);
        }
        return _signMask(vals, mask, digest);
    }

    function recipientCount() external view returns (uint256) {
        return recipients.length;
    }

    function batchCount() external view returns (uint256) {
        return batchIds.length;
    }

    function currentCheckpoint() external view returns (bytes32) {
        return _checkpoint(current);
    }

    function currentNonce() external view returns (uint64) {
        return current.nonce;
    }
}

contract BridgeEscrowWithdrawInvariantTest is EscrowTestBase {
    TestToken internal token;
    BridgeEscrow internal escrow;
    WithdrawalHandler internal handler;

    function setUp() public {
        token = new TestToken("Bridge Test Token", "BTT");
        Validator[] memory v = _validators("genesis", 4);
        uint256[] memory powers = new uint256[](4);
        (powers[0], powers[1], powers[2], powers[3]) = (40, 30, 20, 10);
        BridgeEscrow.ValidatorSet memory s = _set(0, v, powers);
        escrow = _newEscrow(token, s);
        handler = new WithdrawalHandler(escrow, token, v, s);

        bytes4[] memory selectors = new bytes4[](7);
        selectors[0] = WithdrawalHandler.deposit.selector;
        selectors[1] = WithdrawalHandler.submitBatch.selector;
        selectors[2] = WithdrawalHandler.claim.selector;
        selectors[3] = WithdrawalHandler.rotate.selector;
        selectors[4] = WithdrawalHandler.replayClaim.selector;
        selectors[5] = WithdrawalHandler.forgeClaim.selector;
        selectors[6] = WithdrawalHandler.rogueBatch.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    /// Tokens out (sum of claims) never exceed tokens in (deposits), and the escrow holds
    /// exactly the difference.
    function invariant_OutNeverExceedsIn() public view {
        assertLe(handler.ghostOut(), handler.ghostIn());
        assertEq(token.balanceOf(address(escrow)), handler.ghostIn() - handler.ghostOut());
    }

    /// Every promise is backed: outstanding = accepted totals - claims <= balance, and it is
    /// the sum of what is left of each batch.
    function invariant_OutstandingIsBackedAndConsistent() public view {
        uint256 outstanding = escrow.outstanding();
        assertEq(outstanding, handler.ghostPromised() - handler.ghostOut());
        assertLe(outstanding, token.balanceOf(address(escrow)));
        uint256 sum;
        for (uint256 i = 0; i < handler.batchCount(); i++) {
            uint64 id = handler.batchIds(i);
            assertEq(escrow.remaining(id), handler.ghostBatchTotal(id) - handler.ghostBatchPaid(id));
            sum += escrow.remaining(id);
        }
        assertEq(sum, outstanding);
    }

    /// Each recipient got exactly what its claimed withdrawals say, no more.
    function invariant_RecipientsGetExactlyTheirClaims() public view {
        for (uint256 i = 0; i < handler.recipientCount(); i++) {
            address r = handler.recipients(i);
            assertEq(token.balanceOf(r), handler.ghostPaidTo(r));
        }
    }

    /// No replayed or forged claim and no under-signed, stale or underfunded batch got through.
    function invariant_AttacksAlwaysRefused() public view {
        assertFalse(handler.ghostUnexpectedSuccess());
        assertFalse(handler.ghostWrongError());
    }

    /// The escrow's validator set is the one the handler rotated to.
    function invariant_CheckpointFollowsRotations() public view {
        assertEq(escrow.checkpoint(), handler.currentCheckpoint());
        assertEq(escrow.valsetNonce(), handler.currentNonce());
    }

    /// At the end of each run every pending withdrawal can still be claimed, after which
    /// nothing is owed and the escrow keeps deposits minus withdrawals.
    function afterInvariant() public {
        handler.drain();
        assertEq(escrow.outstanding(), 0);
        assertEq(token.balanceOf(address(escrow)), handler.ghostIn() - handler.ghostBatched());
    }
}
