// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title MessageBox: anyone sends a short message to an address; the bridge's validators
/// deliver it to that address's inbox on the ledger.
/// @notice Each message takes the next nonce, so the ledger can order messages and deliver
/// each one once, however often validators see it.
contract MessageBox {
    /// The longest payload: a vote carries at most 16 KiB, and inboxes should stay small.
    uint256 public constant MAX_PAYLOAD = 1024;

    /// The nonce the next message gets.
    uint256 public nextNonce;

    event Message(uint256 indexed nonce, address indexed sender, address indexed to, bytes payload);

    error PayloadTooLarge(uint256 size, uint256 max);

    function send(address to, bytes calldata payload) external returns (uint256 nonce) {
        if (payload.length > MAX_PAYLOAD) revert PayloadTooLarge(payload.length, MAX_PAYLOAD);
        nonce = nextNonce++;
        emit Message(nonce, msg.sender, to, payload);
    }
}
