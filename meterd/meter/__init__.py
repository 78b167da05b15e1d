"""The meter model that meterd's actions act upon.

:class:`~meterd.meter.interface.Meter` is the one interface a firmware binding
implements; :class:`~meterd.meter.simulation.SimulatedMeter` implements it with
state persisted in the state directory.  Nothing here checks permissions: the
guard decides before any method of a meter is called.
"""
