package lab

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func yamlRoundTrip(t Topology) (Topology, error) {
	b, err := yaml.Marshal(t)
	if err != nil {
		return Topology{}, err
	}
	return ParseTopology(b)
}

func TestOwns(t *testing.T) {
	n := Names{Lab: "weft"}
	for name, want := range map[string]bool{
		"weft-wan":        true,
		"weft-c1-n1-p2":   true,
		"weft-x":          true,
		"weft":            false,
		"weft-":           false,
		"weftx-c1-n1":     false,
		"wef-c1":          false,
		"other":           false,
		"xweft-c1":        false,
		"WEFT-c1":         false,
		"wt1234-weft-c1":  false,
		"weft2-c1-n1-p1":  false,
		" weft-c1-n1-p1":  false,
		"weft-c1-lan-old": true,
	} {
		if got := n.Owns(name); got != want {
			t.Errorf("Owns(%q) = %v, want %v", name, got, want)
		}
	}
	if (Names{}).Owns("-x") {
		t.Error("empty lab name owns names")
	}
}

func TestParseTarget(t *testing.T) {
	names := Names{Lab: "weft"}
	for _, tc := range []struct {
		in, ns string
		kind   TargetKind
	}{
		{"wan", "weft-wan", TargetWAN},
		{"ctl", "weft-ctl", TargetCtl},
		{"c1/lan", "weft-c1-lan", TargetLAN},
		{"c2/rtr", "weft-c2-rtr", TargetRouter},
		{"c1/n1", "weft-c1-n1", TargetNode},
		{"east-1/n12", "weft-east-1-n12", TargetNode},
		{"c1/n2-p3", "weft-c1-n2-p3", TargetPod},
	} {
		tg, err := ParseTarget(tc.in)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tc.in, err)
			continue
		}
		if tg.Kind != tc.kind || names.Namespace(tg) != tc.ns || tg.String() != tc.in {
			t.Errorf("ParseTarget(%q) = %+v ns %s str %s", tc.in, tg, names.Namespace(tg), tg)
		}
	}
	for _, bad := range []string{"", "c1", "c1/", "/n1", "c1/n0", "c1/n1-p0", "c1/p1", "c1/n1/p1", "C1/n1", "c1/n01", "c1/node1", "../x/n1"} {
		if tg, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want error", bad, tg)
		}
	}
}
