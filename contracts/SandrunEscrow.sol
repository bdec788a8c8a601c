// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The part of ERC-20 the escrow uses. Calls go through `_callToken`, which also
///      accepts tokens that return nothing (e.g. USDT) instead of `true`.
interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function allowance(address owner, address spender) external view returns (uint256);
    function balanceOf(address account) external view returns (uint256);
}

/// @title SandrunEscrow
/// @notice Per-job escrow for Sandrun jobs, in ETH (`token == address(0)`) or an ERC-20.
///         The payer locks `amount` for a job key derived from (payer, jobHash, nonce)
///         with a deadline. The payer alone releases it to payees (the workers whose
///         results it verified), the remainder going back to the payer; the payer can
///         take everything back at any time while it is open, and once the deadline has
///         come anyone can trigger that refund, which always pays the payer.
///         There is no owner, no admin, no upgrade, no fee, and no way for anyone but the
///         payer to send funds anywhere but back to the payer.
///
///         Every payment out (a payee's share, the payer's remainder or refund) is pushed
///         with a call bounded to `SEND_GAS`. A recipient whose call fails (it reverts,
///         burns its gas, or a token refuses the transfer) is credited instead: the amount
///         stays in the contract under `owed(token, recipient)` and the recipient pulls it
///         with `withdraw()` / `withdrawToken(token)`. So one payee that refuses a payment
///         never blocks the others, and nothing is lost.
contract SandrunEscrow {
    enum State {
        None, // unknown key
        Open,
        Released,
        Refunded
    }

    struct Escrow {
        address payer; //   slot 0 (20 bytes)
        uint64 deadline; // slot 0 (8 bytes): unix seconds; refundable by anyone from then on
        State state; //     slot 0 (1 byte)
        address token; //   slot 1: address(0) for ETH
        uint256 amount; //  slot 2
    }

    // ---------------------------------------------------------------- errors

    /// No escrow was ever opened under `key`.
    error UnknownEscrow(bytes32 key);
    /// Only the escrow's payer may do this.
    error NotPayer(bytes32 key, address caller);
    /// The escrow is no longer open (already released or refunded).
    error NotOpen(bytes32 key, State state);
    /// `open` with amount 0.
    error BadAmount();
    /// `open` with a msg.value other than `expected` (the amount for ETH, 0 for a token).
    error BadValue(uint256 sent, uint256 expected);
    /// `open` with a deadline not after the current block's timestamp.
    error DeadlineInPast(uint64 deadline, uint256 blockTimestamp);
    /// An escrow already exists (in any state) under this key: use another nonce.
    error KeyInUse(bytes32 key);
    /// `release` with payees and amounts of different lengths.
    error LengthMismatch(uint256 payees, uint256 amounts);
    /// `release` naming address(0) as the payee at `index`.
    error ZeroPayee(uint256 index);
    /// `release` whose amounts add up to more than the escrowed amount; `index` is the
    /// first payee whose amount does not fit in what is left.
    error OverRelease(uint256 escrowed, uint256 index);
    /// A transfer that must succeed failed: the token pull at `open`, or a `withdraw` /
    /// `withdrawToken` whose receiver reverted or whose token returned false.
    error TransferFailed(address token, address to, uint256 amount);
    /// A refund by someone other than the payer before the deadline.
    error NotYetRefundable(bytes32 key, uint64 deadline, uint256 blockTimestamp);
    /// `open` of a token escrow whose payer has not approved the escrow for `needed`.
    error InsufficientAllowance(address token, uint256 allowance, uint256 needed);
    /// `open` of a token escrow whose payer holds less than `needed`.
    error InsufficientBalance(address token, uint256 balance, uint256 needed);
    /// `token` has no code: not an ERC-20 contract.
    error NotAToken(address token);
    /// The escrow received a different amount than was transferred (fee-on-transfer or
    /// rebasing tokens are not supported).
    error UnsupportedToken(address token, uint256 received, uint256 expected);
    /// A call re-entered open/release/refund/withdraw while one of them was running.
    error Reentrancy();
    /// `withdraw` / `withdrawToken` by an account the contract owes nothing in `token`.
    error NothingOwed(address account, address token);
    /// Too little gas left to give the next recipient its full `SEND_GAS`: the
    /// transaction's gas limit is too low (raise it; nothing was paid). Without this check a
    /// tight gas limit could starve an honest payee's call and turn its payment into a credit.
    error InsufficientGas(uint256 gasLeft, uint256 needed);

    // ---------------------------------------------------------------- events

    event Opened(
        bytes32 indexed key,
        address indexed payer,
        bytes32 indexed jobHash,
        address token,
        uint256 amount,
        uint64 deadline
    );
    event Released(bytes32 indexed key, address[] payees, uint256[] amounts, uint256 remainderRefunded);
    /// `byDeadline` is true when the refund was made by someone other than the payer,
    /// which the deadline allowed.
    event Refunded(bytes32 indexed key, address indexed payer, uint256 amount, bool byDeadline);
    /// A payment out of escrow `key` to `account` failed and was credited to it instead;
    /// `account` pulls it with `withdraw()` (ETH) or `withdrawToken(token)`.
    event Credited(bytes32 indexed key, address indexed account, address token, uint256 amount);
    /// `account` pulled `amount` of `token` (address(0): ETH) it was owed.
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    // ---------------------------------------------------------------- storage

    mapping(bytes32 => Escrow) private _escrows;
    /// token (address(0): ETH) => account => amount credited and not yet withdrawn.
    mapping(address => mapping(address => uint256)) private _owed;

    /// @notice Gas each push payment's call may use (an ETH receiver's code, or a token's
    ///         `transfer`). Enough for smart-contract wallets (a Safe's receive uses a few
    ///         thousand) and common tokens; it bounds what a hostile payee can burn.
    uint256 public constant SEND_GAS = 100_000;
    /// Gas that must be left before each push payment: the call's own gas (the 63/64 rule
    /// withholds 1/64 of what is left), the call's fixed costs (cold account, value
    /// transfer, new account) and the credit that follows a failed call.
    uint256 private constant _SEND_RESERVE = SEND_GAS + SEND_GAS / 63 + 70_000;

    uint256 private constant _UNLOCKED = 1;
    uint256 private constant _LOCKED = 2;
    uint256 private _lock = _UNLOCKED;

    modifier nonReentrant() {
        if (_lock != _UNLOCKED) revert Reentrancy();
        _lock = _LOCKED;
        _;
        _lock = _UNLOCKED;
    }

    // ---------------------------------------------------------------- views

    /// @notice The escrow under `key`; all zero with state None for an unknown key.
    function escrows(bytes32 key)
        external
        view
        returns (address payer, address token, uint256 amount, uint64 deadline, State state)
    {
        Escrow storage e = _escrows[key];
        return (e.payer, e.token, e.amount, e.deadline, e.state);
    }

    /// @notice What the contract owes `account` in `token` (address(0): ETH): payments that
    ///         were credited because pushing them failed, until withdrawn.
    function owed(address token, address account) external view returns (uint256) {
        return _owed[token][account];
    }

    /// @notice The key `open` derives: keccak256(abi.encode(payer, jobHash, nonce)).
    function keyOf(address payer, bytes32 jobHash, uint256 nonce) public pure returns (bytes32) {
        return keccak256(abi.encode(payer, jobHash, nonce));
    }

    // ---------------------------------------------------------------- actions

    /// @notice Locks `amount` of `token` (address(0): ETH, sent as msg.value) for the job
    ///         `jobHash`. For a token, the payer must first `approve` this contract.
    /// @return key keccak256(abi.encode(msg.sender, jobHash, nonce))
    function open(bytes32 jobHash, uint256 nonce, address token, uint256 amount, uint64 deadline)
        external
        payable
        nonReentrant
        returns (bytes32 key)
    {
        if (amount == 0) revert BadAmount();
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);
        key = keyOf(msg.sender, jobHash, nonce);
        if (_escrows[key].state != State.None) revert KeyInUse(key);

        if (token == address(0)) {
            if (msg.value != amount) revert BadValue(msg.value, amount);
        } else {
            if (msg.value != 0) revert BadValue(msg.value, 0);
            if (token.code.length == 0) revert NotAToken(token);
            uint256 allowed = IERC20Minimal(token).allowance(msg.sender, address(this));
            if (allowed < amount) revert InsufficientAllowance(token, allowed, amount);
            uint256 held = IERC20Minimal(token).balanceOf(msg.sender);
            if (held < amount) revert InsufficientBalance(token, held, amount);
        }

        // Effects before the transfer in.
        _escrows[key] =
            Escrow({payer: msg.sender, deadline: deadline, state: State.Open, token: token, amount: amount});
        emit Opened(key, msg.sender, jobHash, token, amount, deadline);

        if (token != address(0)) {
            uint256 before = IERC20Minimal(token).balanceOf(address(this));
            _callToken(token, abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)), address(this), amount);
            uint256 received = IERC20Minimal(token).balanceOf(address(this)) - before;
            if (received != amount) revert UnsupportedToken(token, received, amount);
        }
    }

    /// @notice Pays `amounts[i]` to `payees[i]` and refunds what is left to the payer.
    ///         Only the payer, only while open (before or after the deadline). Empty
    ///         arrays refund everything. A recipient whose payment fails is credited
    ///         (`Credited`) and withdraws later; the release itself still succeeds.
    function release(bytes32 key, address[] calldata payees, uint256[] calldata amounts) external nonReentrant {
        Escrow storage e = _escrows[key];
        State state = e.state;
        if (state == State.None) revert UnknownEscrow(key);
        if (msg.sender != e.payer) revert NotPayer(key, msg.sender);
        if (state != State.Open) revert NotOpen(key, state);
        if (payees.length != amounts.length) revert LengthMismatch(payees.length, amounts.length);

        uint256 escrowed = e.amount;
        uint256 paid;
        for (uint256 i = 0; i < payees.length; ++i) {
            if (payees[i] == address(0)) revert ZeroPayee(i);
            // paid <= escrowed always holds here, so this cannot underflow.
            if (amounts[i] > escrowed - paid) revert OverRelease(escrowed, i);
            paid += amounts[i];
        }
        uint256 remainder = escrowed - paid;
        address token = e.token;
        address payer = e.payer;

        // Effects before any transfer out.
        e.state = State.Released;
        emit Released(key, payees, amounts, remainder);

        for (uint256 i = 0; i < payees.length; ++i) {
            _payOrCredit(key, token, payees[i], amounts[i]);
        }
        _payOrCredit(key, token, payer, remainder);
    }

    /// @notice Returns the whole amount to the payer. The payer may do this at any time
    ///         while open; anyone else only once block.timestamp >= deadline.
    function refund(bytes32 key) external nonReentrant {
        Escrow storage e = _escrows[key];
        State state = e.state;
        if (state == State.None) revert UnknownEscrow(key);
        if (state != State.Open) revert NotOpen(key, state);
        address payer = e.payer;
        bool byDeadline = msg.sender != payer;
        if (byDeadline && block.timestamp < e.deadline) {
            revert NotYetRefundable(key, e.deadline, block.timestamp);
        }
        uint256 amount = e.amount;

        // Effects before the transfer out.
        e.state = State.Refunded;
        emit Refunded(key, payer, amount, byDeadline);

        _payOrCredit(key, e.token, payer, amount);
    }

    /// @notice Pulls the ETH credited to the caller (payments to it that failed).
    ///         Forwards all gas; reverts `NothingOwed` when nothing is owed, and
    ///         `TransferFailed` (keeping the credit) when the caller refuses the ETH.
    function withdraw() external nonReentrant {
        _withdraw(address(0));
    }

    /// @notice Pulls the `token` credited to the caller.
    function withdrawToken(address token) external nonReentrant {
        _withdraw(token);
    }

    // ---------------------------------------------------------------- internals

    function _withdraw(address token) private {
        uint256 amount = _owed[token][msg.sender];
        if (amount == 0) revert NothingOwed(msg.sender, token);
        // Effects before the transfer out.
        _owed[token][msg.sender] = 0;
        emit Withdrawn(msg.sender, token, amount);
        if (token == address(0)) {
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert TransferFailed(address(0), msg.sender, amount);
        } else {
            _callToken(token, abi.encodeCall(IERC20Minimal.transfer, (msg.sender, amount)), msg.sender, amount);
        }
    }

    /// @dev Pushes `amount` to `to` with a call bounded to SEND_GAS; if that call fails,
    ///      credits `to` instead. Called after the escrow's state change (CEI), under the
    ///      lock.
    function _payOrCredit(bytes32 key, address token, address to, uint256 amount) private {
        if (amount == 0) return;
        uint256 left = gasleft();
        if (left < _SEND_RESERVE) revert InsufficientGas(left, _SEND_RESERVE);
        bool ok;
        if (token == address(0)) {
            // Assembly: no return data is copied, so a receiver cannot make the escrow pay
            // for a huge return buffer.
            assembly {
                ok := call(SEND_GAS, to, amount, 0, 0, 0, 0)
            }
        } else {
            (bool called, bytes memory ret) = token.call{gas: SEND_GAS}(abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
            ok = called && (ret.length == 0 || (ret.length >= 32 && abi.decode(ret, (uint256)) == 1));
        }
        if (!ok) {
            _owed[token][to] += amount;
            emit Credited(key, to, token, amount);
        }
    }

    /// @dev Calls `token` with `data`; succeeds when the call does not revert and returns
    ///      either nothing or an ABI-encoded `true`. `token` is known to have code (checked
    ///      at `open`).
    function _callToken(address token, bytes memory data, address to, uint256 amount) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && (ret.length < 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TransferFailed(token, to, amount);
        }
    }
}
