"""Local Azure Batch emulator for the Update Job contract (GET/PATCH /jobs/{jobId}).

See README.md beside this file for what it implements and what it leaves out.
"""

from standins.batch.emulator import BatchEmulator
from standins.batch.faults import Fault
from standins.batch.recording import RecordedRequest
from standins.batch.service import SUPPORTED_API_VERSIONS, timeout_parameter
from standins.batch.store import AppliedPatch

__all__ = [
    "SUPPORTED_API_VERSIONS",
    "AppliedPatch",
    "BatchEmulator",
    "Fault",
    "RecordedRequest",
    "timeout_parameter",
]
