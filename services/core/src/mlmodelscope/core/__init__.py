"""MLModelScope core library: imported by every service, imports none of them and no ML framework."""

__version__ = "0.1.0"
