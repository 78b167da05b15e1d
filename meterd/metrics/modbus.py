"""Modbus function codes as metric label values: a fixed, closed set of names."""

from __future__ import annotations

#: The public function codes of the Modbus application protocol (V1.1b3, section 5.1).
FUNCTION_NAMES: dict[int, str] = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
    5: "write_single_coil",
    6: "write_single_register",
    7: "read_exception_status",
    8: "diagnostics",
    11: "get_comm_event_counter",
    12: "get_comm_event_log",
    15: "write_multiple_coils",
    16: "write_multiple_registers",
    17: "report_server_id",
    20: "read_file_record",
    21: "write_file_record",
    22: "mask_write_register",
    23: "read_write_multiple_registers",
    24: "read_fifo_queue",
    43: "encapsulated_interface_transport",
}

#: The label value of any other code: a client picks the code, so it must not pick the label.
OTHER = "other"


def function_name(code: int) -> str:
    """Return the label value of a function code (``"other"`` for any code not in the table)."""
    return FUNCTION_NAMES.get(code, OTHER)
