package agents

import "testing"

// TestParseSelector: every spelling of "every agent" selects any agent;
// "none" selects none; terms must all hold; bad terms are refused.
func TestParseSelector(t *testing.T) {
	web := map[string]string{"host": "web-1", "os": "linux", "mode": "ebpf"}
	tests := []struct {
		sel     string
		match   bool
		wantErr bool
	}{
		{"", true, false},
		{"*", true, false},
		{"all", true, false},
		{"none", false, false},
		{"os=linux", true, false},
		{"os=linux,mode=procfs", false, false},
		{"host=web-1, os=linux", true, false},
		{"colour=blue", false, true},
		{"os=", false, true},
		{"everything", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s, err := ParseSelector(tt.sel)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && s.Matches(web) != tt.match {
				t.Fatalf("matches %v, want %v", s.Matches(web), tt.match)
			}
		})
	}
}
