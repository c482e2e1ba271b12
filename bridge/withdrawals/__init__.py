"""The withdrawal path's cryptography, byte for byte what the escrow checks
(docs/withdrawals.md): the OpenZeppelin Merkle tree over withdrawals and the EIP-712 digests
and signatures of batches and validator sets."""
