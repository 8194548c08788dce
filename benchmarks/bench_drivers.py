"""Driver hot paths against the in-process twins (registry ``sim://``): us per call.

The clock loop does per cycle (decision 0006): the 409B's cycle table re-armed with the
entries that changed (``m 0``, about 2.5 ``t`` lines, ``m t``), one DG645 ``*TRG``, one
SR400 count (after the two TRIG edges of its gate). Printed: each call, and the whole driver
path per cycle beside the previous one (a frequency set, a phase set, a count), measured in
the same run. Also printed, for scale: a frequency set through a stock pymeasure
``Channel.setting(..., check_set_errors=True)`` on the same twin.
"""

from __future__ import annotations

import time
import types

import simpy
from pymeasure.instruments import Channel, Instrument

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.novatech409b import CycleTable


def _per_call_us(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):  # best of 5 runs: the least disturbed by other processes
        t0 = time.perf_counter()
        fn(n)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


class _StockChannel(Channel):
    frequency = Channel.setting("F{ch} %.7f", "Frequency in Hz.",
                                set_process=lambda hz: hz * 1e-6, check_set_errors=True)


class _StockNovatech(Instrument):
    ch_0 = Instrument.ChannelCreator(_StockChannel, 0)

    def __init__(self, adapter, **kwargs):
        super().__init__(adapter, "stock", includeSCPI=False, **kwargs)

    def check_set_errors(self):
        if self.read() != "OK":
            raise RuntimeError("not OK")
        return []


def main() -> int:
    # the twins stand alone (no clock world): the counter's TRIG edges are fed by hand
    world = types.SimpleNamespace(env=simpy.Environment())
    dds = open_instrument("novatech409b", "sim://novatech409b", world=world)
    counter = open_instrument("sr400", "sim://sr400", world=world)
    pulser = open_instrument("dg645", "sim://dg645", world=world)
    counter.configure_gated(2e-3)
    counter.arm()
    offsets = counter.trigger_offsets()
    ch = dds.ch_0
    table = CycleTable(ch, 4, idle_frequency_hz=80e6)
    n = 20000
    clock = [0.0]

    def edges():
        t = clock[0] = clock[0] + 0.105
        world.env.run(until=t + 0.01)
        for dt in offsets:
            counter.twin.trigger(t + dt)

    def segments(i):
        f = 80e6 + (i // 2) * 0.1
        return ((f, 0.0, 1.0), (f, 0.0, 0.0), (f, 0.25, 1.0), (f, 0.125 if i % 2 else 0.875, 1.0))

    segs = [segments(i) for i in range(n)]

    def freq(k):
        for i in range(k):
            ch.frequency = 80e6 + i * 0.1

    def phase(k):
        for i in range(k):
            ch.phase = i * 1e-4

    def prepare(k):
        for i in range(k):
            table.prepare(segs[i])

    def trigger(k):
        for _ in range(k):
            pulser.trigger()

    def count(k):
        c = counter.count
        for _ in range(k):
            edges()
            c()

    def feed_only(k):
        for _ in range(k):
            edges()

    def cycle(k):
        c = counter.count
        for i in range(k):
            table.prepare(segs[i])
            pulser.trigger()
            edges()
            c()

    def old_cycle(k):
        c = counter.count
        for i in range(k):
            ch.frequency = 80e6 + i * 0.1
            ch.phase = i * 1e-4
            edges()
            c()

    f_us, p_us = _per_call_us(freq, n), _per_call_us(phase, n)
    prep_us, trg_us = _per_call_us(prepare, n), _per_call_us(trigger, n)
    feed_us = _per_call_us(feed_only, n)
    c_us = _per_call_us(count, n) - feed_us
    cyc_us = _per_call_us(cycle, n) - feed_us
    old_us = _per_call_us(old_cycle, n) - feed_us
    print(f"   novatech409b ch0.frequency = ...   {f_us:6.2f} us/call")
    print(f"   novatech409b ch0.phase = ...       {p_us:6.2f} us/call")
    print(f"   409B CycleTable.prepare (re-arm)   {prep_us:6.2f} us/cycle")
    print(f"   dg645 trigger()                    {trg_us:6.2f} us/call")
    print(f"   sr400 count() (its edges apart)    {c_us:6.2f} us/call")
    print(f"   one cycle (table + trigger + count) {cyc_us:6.2f} us; reference in this run: "
          f"the previous cycle (freq + phase + count) {old_us:6.2f} us")

    stock_adapter = type(dds.adapter)(dds.twin, write_termination="\r\n",
                                      read_termination="\r\n")
    stock = _StockNovatech(stock_adapter)

    def stock_freq(k):
        sch = stock.ch_0
        for i in range(k):
            sch.frequency = 80e6 + i * 0.1

    print(f"   (stock pymeasure setting, same twin {_per_call_us(stock_freq, n):6.2f} us/call)")

    supply = open_instrument("keysight_e36312a", "sim://keysight_e36312a", world=world,
                             slew_a_per_s=100.0)
    coil = supply.ch_2
    coil.current_setpoint  # noqa: B018 - prime the cached setpoint

    def coil_set(k):
        for i in range(k):
            coil.current_setpoint = 0.5 if i % 2 else 0.49

    print(f"   e36312a current_setpoint (+SYST:ERR?) {_per_call_us(coil_set, 2000):6.2f} us/call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
