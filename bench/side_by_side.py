"""side_by_side.py — the results of a bench section that measures dxhub
beside one peer: each metric with the peer's figure and their ratio,
printed as a table and written as $BUILD/bench/<section>.json
([{"metric","value","unit","peer","peer_value","ratio"}])."""
import json


class SideBySide:
    def __init__(self, peer, out):
        self.peer, self.out, self.results = peer, out, []

    def add(self, metric, value, unit, peer_value):
        self.results.append({"metric": metric, "value": round(value, 3), "unit": unit, "peer": self.peer,
                             "peer_value": round(peer_value, 3),
                             "ratio": round(value / peer_value, 3) if peer_value else None})

    def report(self, ours, theirs, width=44):
        """The table (columns headed ours and theirs), then the JSON file."""
        print(f"{'metric':{width}} {ours:>12} {theirs:>12} {'ratio':>7}")
        for r in self.results:
            ratio = f"{r['ratio']:>7.2f}" if r["ratio"] is not None else f"{'-':>7}"
            print(f"{r['metric']:{width}} {r['value']:>12.2f} {r['peer_value']:>12.2f} {ratio}  {r['unit']}")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1) + "\n")
