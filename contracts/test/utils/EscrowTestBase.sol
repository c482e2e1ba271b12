// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {BridgeEscrow} from "../../src/BridgeEscrow.sol";

/// Shared helpers for the withdrawal tests: validator keys, validator sets, the EIP-712 digests
/// and the Merkle leaf computed independently of the contract (from docs/withdrawals.md), signing
/// with vm.sign, and an OpenZeppelin StandardMerkleTree built in Solidity (leaves sorted by hash,
/// a 2n-1 node array with leaf i at 2n-2-i, sorted-pair node hashing, proofs leaf to root).
abstract contract EscrowTestBase is Test {
    /// The order of secp256k1.
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant BATCH_TYPEHASH =
        keccak256("Batch(uint64 batchId,bytes32 root,uint256 total,uint64 valsetNonce)");
    bytes32 internal constant VALSET_TYPEHASH =
        keccak256("ValidatorSet(uint64 nonce,address[] signers,uint256[] powers)");

    struct Validator {
        address addr;
        uint256 key;
    }

    // --- validators and sets --------------------------------------------------------------

    /// `n` validators with deterministic keys derived from `label`, sorted by address.
    function _validators(string memory label, uint256 n) internal pure returns (Validator[] memory v) {
        v = new Validator[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 key = (uint256(keccak256(abi.encode(label, i))) % (SECP256K1_N - 1)) + 1;
            v[i] = Validator(vm.addr(key), key);
        }
        // insertion sort by address
        for (uint256 i = 1; i < n; i++) {
            Validator memory x = v[i];
            uint256 j = i;
            while (j > 0 && v[j - 1].addr > x.addr) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    }

    function _addrs(Validator[] memory v) internal pure returns (address[] memory a) {
        a = new address[](v.length);
        for (uint256 i = 0; i < v.length; i++) {
            a[i] = v[i].addr;
        }
    }

    function _equalPowers(uint256 n, uint256 power) internal pure returns (uint256[] memory p) {
        p = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            p[i] = power;
        }
    }

    function _powers3(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory p) {
        p = new uint256[](3);
        (p[0], p[1], p[2]) = (a, b, c);
    }

    function _set(uint64 nonce, Validator[] memory v, uint256[] memory powers)
        internal
        pure
        returns (BridgeEscrow.ValidatorSet memory)
    {
        return BridgeEscrow.ValidatorSet(nonce, _addrs(v), powers);
    }

    function _checkpoint(BridgeEscrow.ValidatorSet memory set) internal pure returns (bytes32) {
        return keccak256(abi.encode(set.nonce, set.signers, set.powers));
    }

    // --- EIP-712 and leaves, computed independently of the contract -----------------------

    function _domainSeparator(address escrow, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256("BridgeEscrow"), keccak256("1"), chainId, escrow));
    }

    function _typedData(address escrow, uint256 chainId, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", _domainSeparator(escrow, chainId), structHash));
    }

    function _batchDigest(
        address escrow,
        uint256 chainId,
        uint64 batchId,
        bytes32 root,
        uint256 total,
        uint64 valsetNonce
    ) internal pure returns (bytes32) {
        return _typedData(escrow, chainId, keccak256(abi.encode(BATCH_TYPEHASH, batchId, root, total, valsetNonce)));
    }

    function _valsetDigest(address escrow, uint256 chainId, BridgeEscrow.ValidatorSet memory set)
        internal
        pure
        returns (bytes32)
    {
        bytes32 signersHash = keccak256(abi.encodePacked(set.signers));
        bytes32 powersHash = keccak256(abi.encodePacked(set.powers));
        return _typedData(escrow, chainId, keccak256(abi.encode(VALSET_TYPEHASH, set.nonce, signersHash, powersHash)));
    }

    function _leaf(address escrow, uint256 chainId, uint64 batchId, BridgeEscrow.Withdrawal memory w)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(w.id, w.recipient, w.amount, escrow, chainId, batchId))));
    }

    // --- signing --------------------------------------------------------------------------

    function _signOne(uint256 key, bytes32 digest) internal pure returns (BridgeEscrow.Signature memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return BridgeEscrow.Signature(v, r, s);
    }

    /// Validator i signs iff bit i of `mask` is set; the others get an empty slot (v = 0).
    function _signMask(Validator[] memory vals, uint256 mask, bytes32 digest)
        internal
        pure
        returns (BridgeEscrow.Signature[] memory sigs)
    {
        sigs = new BridgeEscrow.Signature[](vals.length);
        for (uint256 i = 0; i < vals.length; i++) {
            if ((mask >> i) & 1 == 1) sigs[i] = _signOne(vals[i].key, digest);
        }
    }

    function _signAll(Validator[] memory vals, bytes32 digest) internal pure returns (BridgeEscrow.Signature[] memory) {
        return _signMask(vals, type(uint256).max, digest);
    }

    /// The other valid signature of the same message: s' = n - s (upper half), v flipped.
    function _malleate(BridgeEscrow.Signature memory sig) internal pure returns (BridgeEscrow.Signature memory) {
        return BridgeEscrow.Signature(sig.v == 27 ? 28 : 27, sig.r, bytes32(SECP256K1_N - uint256(sig.s)));
    }

    // --- OpenZeppelin StandardMerkleTree --------------------------------------------------

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
    }

    /// The tree of `leaves` (which are sorted, in a copy, by hash): tree[0] is the root.
    function _buildTree(bytes32[] memory leaves) internal pure returns (bytes32[] memory tree) {
        uint256 n = leaves.length;
        require(n > 0, "empty tree");
        bytes32[] memory sorted = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            bytes32 x = leaves[i];
            uint256 j = i;
            while (j > 0 && sorted[j - 1] > x) {
                sorted[j] = sorted[j - 1];
                j--;
            }
            sorted[j] = x;
        }
        tree = new bytes32[](2 * n - 1);
        for (uint256 i = 0; i < n; i++) {
            tree[tree.length - 1 - i] = sorted[i];
        }
        for (uint256 k = tree.length - n; k > 0; k--) {
            uint256 i = k - 1;
            tree[i] = _hashPair(tree[2 * i + 1], tree[2 * i + 2]);
        }
    }

    /// The index of `leaf` in `tree` (reverts if absent).
    function _treeIndex(bytes32[] memory tree, bytes32 leaf) internal pure returns (uint256) {
        uint256 n = (tree.length + 1) / 2;
        for (uint256 i = n - 1; i < tree.length; i++) {
            if (tree[i] == leaf) return i;
        }
        revert("leaf not in tree");
    }

    /// The siblings from node `index` up to the root.
    function _proofAt(bytes32[] memory tree, uint256 index) internal pure returns (bytes32[] memory proof) {
        uint256 depth;
        for (uint256 i = index; i > 0; i = (i - 1) / 2) {
            depth++;
        }
        proof = new bytes32[](depth);
        uint256 k;
        for (uint256 i = index; i > 0; i = (i - 1) / 2) {
            proof[k++] = tree[i % 2 == 1 ? i + 1 : i - 1];
        }
    }

    function _proof(bytes32[] memory tree, bytes32 leaf) internal pure returns (bytes32[] memory) {
        return _proofAt(tree, _treeIndex(tree, leaf));
    }

    // --- batches --------------------------------------------------------------------------

    function _leaves(BridgeEscrow escrow, uint64 batchId, BridgeEscrow.Withdrawal[] memory ws)
        internal
        view
        returns (bytes32[] memory leaves)
    {
        leaves = new bytes32[](ws.length);
        for (uint256 i = 0; i < ws.length; i++) {
            leaves[i] = _leaf(address(escrow), block.chainid, batchId, ws[i]);
        }
    }

    function _sum(BridgeEscrow.Withdrawal[] memory ws) internal pure returns (uint256 total) {
        for (uint256 i = 0; i < ws.length; i++) {
            total += ws[i].amount;
        }
    }

    /// Build the tree of `ws` in batch `batchId` and submit its root, signed by every validator
    /// of `current`; returns the tree.
    function _submitSigned(
        BridgeEscrow escrow,
        uint64 batchId,
        BridgeEscrow.Withdrawal[] memory ws,
        Validator[] memory vals,
        BridgeEscrow.ValidatorSet memory current
    ) internal returns (bytes32[] memory tree) {
        tree = _buildTree(_leaves(escrow, batchId, ws));
        uint256 total = _sum(ws);
        bytes32 digest = _batchDigest(address(escrow), block.chainid, batchId, tree[0], total, current.nonce);
        escrow.submitBatch(batchId, tree[0], total, current, _signAll(vals, digest));
    }

    function _newEscrow(IERC20 token, BridgeEscrow.ValidatorSet memory set) internal returns (BridgeEscrow) {
        return new BridgeEscrow(token, set.signers, set.powers);
    }
}
