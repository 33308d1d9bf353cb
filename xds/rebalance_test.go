package xds

import "testing"

func TestPlanShed(t *testing.T) {
	abc := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name   string
		counts map[string]int
		alive  []string
		want   int
	}{
		{"alone", map[string]int{"a": 30}, []string{"a"}, 0},
		{"balanced", map[string]int{"a": 10, "b": 10, "c": 10}, abc, 0},
		{"within ten percent", map[string]int{"a": 11, "b": 10, "c": 9}, abc, 0},
		{"restarted replica empty", map[string]int{"a": 15, "b": 15, "c": 0}, abc, 5},
		{"others already at share", map[string]int{"a": 11, "b": 11, "c": 8}, abc, 1},
		{"far over", map[string]int{"a": 20, "b": 5, "c": 5}, abc, 10},
		{"dead replica not counted", map[string]int{"a": 15, "b": 15, "c": 40}, []string{"a", "b"}, 0},
		{"small counts", map[string]int{"a": 2, "b": 1, "c": 0}, abc, 1},
		{"uneven but stable", map[string]int{"a": 2, "b": 1, "c": 1}, abc, 0},
	} {
		if got := planShed(tc.counts, tc.alive, "a"); got != tc.want {
			t.Errorf("%s: planShed = %d, want %d", tc.name, got, tc.want)
		}
	}
}
