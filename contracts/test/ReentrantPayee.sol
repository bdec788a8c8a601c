// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The escrow functions the attacker calls.
interface ISandrunEscrow {
    function open(bytes32 jobHash, uint256 nonce, address token, uint256 amount, uint64 deadline)
        external
        payable
        returns (bytes32 key);
    function release(bytes32 key, address[] calldata payees, uint256[] calldata amounts) external;
    function refund(bytes32 key) external;
    function withdraw() external;
}

/// @title ReentrantPayee
/// @notice TEST ONLY. A payee (and, when it opens escrows itself, a payer) whose
///         receive() tries to re-enter the escrow. Each re-entry is wrapped in try/catch
///         so the outer payment goes through and the test can read what the re-entry got
///         (`lastError`: the revert data; `reentered`: true if a re-entry succeeded).
///         Mode Revert makes receive() refuse every payment, mode Burn burns all the gas
///         it is given, mode Withdraw re-enters withdraw(); `arm(Accept, ...)` switches it
///         back to accepting, and `pull()` withdraws what the escrow credited it.
contract ReentrantPayee {
    enum Mode {
        Accept,
        Release,
        Refund,
        Revert,
        Burn,
        Withdraw
    }

    ISandrunEscrow public immutable escrow;
    Mode public mode;
    bytes32 public target;
    address[] private _payees;
    uint256[] private _amounts;

    uint256 public attempts;
    bool public reentered;
    bytes public lastError;
    uint256 public received;

    constructor(ISandrunEscrow escrow_) {
        escrow = escrow_;
    }

    /// Sets what receive() does: re-enter release(key, payees, amounts) or refund(key).
    function arm(Mode mode_, bytes32 key, address[] calldata payees, uint256[] calldata amounts) external {
        mode = mode_;
        target = key;
        _payees = payees;
        _amounts = amounts;
    }

    /// Opens an ETH escrow with this contract as the payer.
    function openEth(bytes32 jobHash, uint256 nonce, uint64 deadline) external payable returns (bytes32) {
        return escrow.open{value: msg.value}(jobHash, nonce, address(0), msg.value, deadline);
    }

    /// Releases an escrow this contract is the payer of.
    function release(bytes32 key, address[] calldata payees, uint256[] calldata amounts) external {
        escrow.release(key, payees, amounts);
    }

    /// Pulls what the escrow owes this contract (withdraw()).
    function pull() external {
        escrow.withdraw();
    }

    receive() external payable {
        received += msg.value;
        Mode m = mode;
        if (m == Mode.Revert) revert("ReentrantPayee: refusing payment");
        if (m == Mode.Burn) {
            // Spin until out of gas: the whole call fails having used every unit it got.
            uint256 spin;
            while (gasleft() > 0) spin++;
        }
        if (m == Mode.Withdraw) {
            attempts++;
            try escrow.withdraw() {
                reentered = true;
            } catch (bytes memory err) {
                lastError = err;
            }
        }
        if (m == Mode.Release) {
            attempts++;
            try escrow.release(target, _payees, _amounts) {
                reentered = true;
            } catch (bytes memory err) {
                lastError = err;
            }
        } else if (m == Mode.Refund) {
            attempts++;
            try escrow.refund(target) {
                reentered = true;
            } catch (bytes memory err) {
                lastError = err;
            }
        }
    }
}
