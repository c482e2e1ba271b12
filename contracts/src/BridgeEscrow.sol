// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title BridgeEscrow
/// @notice Holds one ERC20 token for the bridge, both ways (docs/withdrawals.md).
///
///         Deposits: each deposit is numbered with a gapless nonce (0, 1, 2, ...) and announced
///         by a `Deposit` event that the validators read; the amount in the event is what the
///         escrow actually received, so fee-on-transfer tokens are credited correctly.
///
///         Withdrawals: the escrow stores a checkpoint of the validator set (Ethereum signing
///         addresses sorted ascending, their powers, and a nonce). Validators holding strictly
///         more than 2/3 of the power sign (EIP-712, domain "BridgeEscrow"/"1", this chain and
///         this address) the Merkle root of a batch of withdrawals; anyone submits the root with
///         the signatures (`submitBatch`), and then anyone claims each withdrawal with its
///         Merkle proof (`claim`), which pays its recipient once. The escrow never promises more
///         than it holds: a batch is accepted only if `balance >= outstanding + total`.
///
///         No owner, no pause, no upgrade: the only way to change who signs is a validator-set
///         update signed by the current set (`updateValidatorSet`).
contract BridgeEscrow is EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice A validator set: Ethereum signing addresses, strictly ascending, with their
    ///         powers at the same positions, and the set's nonce.
    struct ValidatorSet {
        uint64 nonce;
        address[] signers;
        uint256[] powers;
    }

    /// @notice One ECDSA signature. `v == 0` marks a validator that did not sign.
    struct Signature {
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice One withdrawal of a batch: ledger-wide unique `id`, paid to `recipient`.
    struct Withdrawal {
        uint64 id;
        address recipient;
        uint256 amount;
    }

    /// @notice EIP-712 type hash of a batch root.
    bytes32 public constant BATCH_TYPEHASH =
        keccak256("Batch(uint64 batchId,bytes32 root,uint256 total,uint64 valsetNonce)");
    /// @notice EIP-712 type hash of a validator set.
    bytes32 public constant VALIDATOR_SET_TYPEHASH =
        keccak256("ValidatorSet(uint64 nonce,address[] signers,uint256[] powers)");

    /// @notice The largest allowed increase of the validator-set nonce in one update.
    uint256 public constant MAX_NONCE_JUMP = 1_000_000;

    /// @notice A set's total power must stay below this. The threshold check computes
    ///         `3 * signed` and `2 * total` in uint256; with every set's total below 2**200
    ///         neither product (nor any running sum of powers) can overflow, so the check can
    ///         never revert with a panic or wrap around. 2**200 is far above any real stake.
    uint256 public constant MAX_TOTAL_POWER = 2 ** 200;

    /// @notice The only token this escrow accepts.
    IERC20 public immutable token;

    /// @notice Number of deposits so far; also the nonce the next deposit gets.
    uint256 public depositCount;

    /// @notice keccak256(abi.encode(nonce, signers, powers)) of the current validator set.
    bytes32 public checkpoint;

    /// @notice The nonce of the current validator set.
    uint64 public valsetNonce;

    /// @notice Tokens promised by submitted batches and not claimed yet.
    uint256 public outstanding;

    /// @notice The Merkle root of each submitted batch (zero: not submitted).
    mapping(uint64 batchId => bytes32 root) public batchRoots;

    /// @notice What is left to claim of each submitted batch.
    mapping(uint64 batchId => uint256 amount) public remaining;

    /// @notice Whether the withdrawal with this id has been paid.
    mapping(uint64 id => bool paid) public claimed;

    /// @notice One deposit of `amount` tokens (as received) by `sender`, to be credited to
    ///         `recipient` on the other side.
    event Deposit(uint256 indexed nonce, address indexed sender, address indexed recipient, uint256 amount);

    /// @notice The validator set is now this one (also emitted by the constructor, nonce 0).
    event ValidatorSetUpdated(uint64 indexed nonce, address[] signers, uint256[] powers);

    /// @notice A batch root signed by the validators was accepted.
    event BatchSubmitted(uint64 indexed batchId, bytes32 root, uint256 total);

    /// @notice Withdrawal `id` of batch `batchId` paid `amount` tokens to `recipient`.
    event Claimed(uint64 indexed id, uint64 indexed batchId, address indexed recipient, uint256 amount);

    /// @notice The amount asked for, or the amount the escrow received, is zero.
    error ZeroAmount();
    /// @notice The recipient is the zero address.
    error ZeroRecipient();
    /// @notice The token given to the constructor is the zero address.
    error ZeroToken();

    /// @notice A validator set is empty, its arrays differ in length, its addresses are not
    ///         strictly ascending (or the first is zero), or its total power is zero or too large.
    error MalformedValidatorSet();
    /// @notice The validator set passed as the current one does not hash to the checkpoint.
    error IncorrectCheckpoint();
    /// @notice There must be exactly one signature slot per signer of the current set.
    error SignatureCountMismatch(uint256 signatures, uint256 signers);
    /// @notice The signature at `index` is malformed, malleable, or not by `signers[index]`.
    error InvalidSignature(uint256 index);
    /// @notice The signers hold `signed` of `total` power: not strictly more than 2/3.
    error InsufficientPower(uint256 signed, uint256 total);
    /// @notice The new set's nonce is not above the current one.
    error StaleValidatorSetNonce(uint64 newNonce, uint64 currentNonce);
    /// @notice The new set's nonce is more than `MAX_NONCE_JUMP` above the current one.
    error NonceJumpTooLarge(uint64 newNonce, uint64 currentNonce);
    /// @notice A batch root is zero.
    error ZeroRoot();
    /// @notice This batch id was already submitted.
    error BatchAlreadySubmitted(uint64 batchId);
    /// @notice The escrow holds `balance` tokens, less than `outstanding + total`.
    error EscrowUnderfunded(uint256 balance, uint256 outstanding, uint256 total);
    /// @notice No batch with this id was submitted.
    error UnknownBatch(uint64 batchId);
    /// @notice Withdrawal `id` was already paid.
    error AlreadyClaimed(uint64 id);
    /// @notice The Merkle proof does not lead from the withdrawal's leaf to the batch root.
    error InvalidProof();
    /// @notice The claim asks for more than what is left of the batch's signed total.
    error ClaimExceedsBatch(uint64 batchId, uint256 remaining, uint256 amount);

    /// @param token_ The token this escrow holds.
    /// @param signers The first validator set's signing addresses, strictly ascending.
    /// @param powers Their powers, at the same positions.
    constructor(IERC20 token_, address[] memory signers, uint256[] memory powers) EIP712("BridgeEscrow", "1") {
        if (address(token_) == address(0)) revert ZeroToken();
        token = token_;
        _requireWellFormed(signers, powers);
        checkpoint = keccak256(abi.encode(uint64(0), signers, powers));
        emit ValidatorSetUpdated(0, signers, powers);
    }

    // --- deposits -------------------------------------------------------------------------

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

    // --- validator set --------------------------------------------------------------------

    /// @notice Replace the validator set by `newSet`, which the `current` set signed
    ///         (EIP-712 `ValidatorSet`) with strictly more than 2/3 of its power. Anyone may send it.
    /// @param newSet The next set; its nonce is above the current one by 1 to `MAX_NONCE_JUMP`.
    /// @param current The current set, which must hash to `checkpoint`.
    /// @param sigs One slot per signer of `current`, in its order; `v == 0` for a missing one.
    function updateValidatorSet(ValidatorSet calldata newSet, ValidatorSet calldata current, Signature[] calldata sigs)
        external
    {
        _requireCurrent(current);
        if (newSet.nonce <= current.nonce) revert StaleValidatorSetNonce(newSet.nonce, current.nonce);
        if (uint256(newSet.nonce) > uint256(current.nonce) + MAX_NONCE_JUMP) {
            revert NonceJumpTooLarge(newSet.nonce, current.nonce);
        }
        _requireWellFormed(newSet.signers, newSet.powers);
        _requireSigned(current, validatorSetDigest(newSet), sigs);

        checkpoint = _checkpoint(newSet);
        valsetNonce = newSet.nonce;
        emit ValidatorSetUpdated(newSet.nonce, newSet.signers, newSet.powers);
    }

    // --- batches and claims ---------------------------------------------------------------

    /// @notice Accept the Merkle `root` of batch `batchId`, worth `total` tokens, signed
    ///         (EIP-712 `Batch`, under the current set's nonce) by strictly more than 2/3 of the
    ///         current set's power. Anyone may send it.
    /// @dev nonReentrant so that a token callback during a claim's transfer (when the balance
    ///      may not have dropped yet) cannot pass the solvency check with stale figures.
    function submitBatch(
        uint64 batchId,
        bytes32 root,
        uint256 total,
        ValidatorSet calldata current,
        Signature[] calldata sigs
    ) external nonReentrant {
        if (root == bytes32(0)) revert ZeroRoot();
        if (batchRoots[batchId] != bytes32(0)) revert BatchAlreadySubmitted(batchId);
        _requireCurrent(current);
        _requireSigned(current, batchDigest(batchId, root, total, current.nonce), sigs);

        // balance >= outstanding + total, written so that a huge signed total cannot overflow.
        uint256 balance = token.balanceOf(address(this));
        uint256 owed = outstanding;
        if (balance < owed || total > balance - owed) revert EscrowUnderfunded(balance, owed, total);

        outstanding = owed + total;
        batchRoots[batchId] = root;
        remaining[batchId] = total;
        emit BatchSubmitted(batchId, root, total);
    }

    /// @notice Pay withdrawal `w` of batch `batchId` to `w.recipient`, once. Anyone may send it.
    /// @param proof The sibling hashes from the withdrawal's leaf up to the batch root.
    function claim(uint64 batchId, Withdrawal calldata w, bytes32[] calldata proof) external nonReentrant {
        bytes32 root = batchRoots[batchId];
        if (root == bytes32(0)) revert UnknownBatch(batchId);
        if (claimed[w.id]) revert AlreadyClaimed(w.id);
        if (!MerkleProof.verifyCalldata(proof, root, withdrawalLeaf(batchId, w))) revert InvalidProof();
        uint256 left = remaining[batchId];
        if (w.amount > left) revert ClaimExceedsBatch(batchId, left, w.amount);

        // Effects before the transfer (checks-effects-interactions), besides nonReentrant.
        claimed[w.id] = true;
        remaining[batchId] = left - w.amount;
        outstanding -= w.amount;
        emit Claimed(w.id, batchId, w.recipient, w.amount);

        token.safeTransfer(w.recipient, w.amount);
    }

    // --- views ----------------------------------------------------------------------------

    /// @notice The Merkle leaf of withdrawal `w` in batch `batchId` of this escrow (OpenZeppelin
    ///         StandardMerkleTree: double keccak over the ABI encoding).
    function withdrawalLeaf(uint64 batchId, Withdrawal calldata w) public view returns (bytes32) {
        return keccak256(
            bytes.concat(keccak256(abi.encode(w.id, w.recipient, w.amount, address(this), block.chainid, batchId)))
        );
    }

    /// @notice The EIP-712 digest validators sign for a batch root.
    /// @param valsetNonce_ The nonce of the set that signs.
    function batchDigest(uint64 batchId, bytes32 root, uint256 total, uint64 valsetNonce_)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(BATCH_TYPEHASH, batchId, root, total, valsetNonce_)));
    }

    /// @notice The EIP-712 digest the current validators sign to hand over to `set`.
    function validatorSetDigest(ValidatorSet calldata set) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    VALIDATOR_SET_TYPEHASH,
                    set.nonce,
                    keccak256(abi.encodePacked(set.signers)),
                    keccak256(abi.encodePacked(set.powers))
                )
            )
        );
    }

    // --- internals ------------------------------------------------------------------------

    function _checkpoint(ValidatorSet calldata set) private pure returns (bytes32) {
        return keccak256(abi.encode(set.nonce, set.signers, set.powers));
    }

    function _requireCurrent(ValidatorSet calldata current) private view {
        if (_checkpoint(current) != checkpoint) revert IncorrectCheckpoint();
    }

    /// Non-empty, equal lengths, addresses strictly ascending from a non-zero first one (so no
    /// duplicates and no zero address), 0 < total power < MAX_TOTAL_POWER.
    function _requireWellFormed(address[] memory signers, uint256[] memory powers) private pure {
        uint256 n = signers.length;
        if (n == 0 || powers.length != n || signers[0] == address(0)) revert MalformedValidatorSet();
        uint256 total;
        for (uint256 i = 0; i < n; i++) {
            if (i > 0 && signers[i] <= signers[i - 1]) revert MalformedValidatorSet();
            // Checked per step so the sum never overflows: both terms are below 2**200 here.
            if (powers[i] >= MAX_TOTAL_POWER) revert MalformedValidatorSet();
            total += powers[i];
            if (total >= MAX_TOTAL_POWER) revert MalformedValidatorSet();
        }
        if (total == 0) revert MalformedValidatorSet();
    }

    /// Every slot of `sigs` is either absent (`v == 0`) or a valid low-s signature of `digest`
    /// by the signer at the same position of `current` (which matched the checkpoint, so it is
    /// well formed); the signers hold strictly more than 2/3 of `current`'s power.
    function _requireSigned(ValidatorSet calldata current, bytes32 digest, Signature[] calldata sigs) private pure {
        uint256 n = current.signers.length;
        if (sigs.length != n) revert SignatureCountMismatch(sigs.length, n);
        uint256 total;
        uint256 signed;
        for (uint256 i = 0; i < n; i++) {
            uint256 power = current.powers[i];
            total += power;
            Signature calldata sig = sigs[i];
            if (sig.v == 0) continue;
            (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, sig.v, sig.r, sig.s);
            if (err != ECDSA.RecoverError.NoError || recovered != current.signers[i]) revert InvalidSignature(i);
            signed += power;
        }
        // total < MAX_TOTAL_POWER = 2**200 (checked when the set was stored): no overflow.
        if (3 * signed <= 2 * total) revert InsufficientPower(signed, total);
    }
}
