package export

import (
	"testing"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func response(t testing.TB, rejected int64, msg string) []byte {
	b, err := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{PartialSuccess: &colmetrics.ExportMetricsPartialSuccess{
		RejectedDataPoints: rejected, ErrorMessage: msg}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want partialSuccess
	}{
		{"empty", nil, partialSuccess{}},
		{"partial", response(t, 3, "samples not stored: out_of_window=3"), partialSuccess{3, "samples not stored: out_of_window=3"}},
		{"negative", response(t, -1, ""), partialSuccess{Rejected: -1}},
		{"merged", append(response(t, 2, "a"), response(t, 0, "b")...), partialSuccess{2, "b"}},
		{"unknown field", protowire.AppendVarint(protowire.AppendTag(response(t, 5, ""), 9, protowire.VarintType), 1), partialSuccess{Rejected: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeResponse(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("decodeResponse = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// FuzzDecodeResponse: the protowire decoder of a node's answer agrees
// with the generated code's, on success or failure and on the values.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(response(f, 3, "why"))
	f.Add(response(f, -1, ""))
	f.Add([]byte{0x0a, 0x02, 0x12, 0xff}) // error_message not UTF-8
	f.Add([]byte{0x0b, 0x0c})             // a group
	f.Add([]byte{0x08, 0x01})             // partial_success with the wrong wire type
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeResponse(b)
		var want colmetrics.ExportMetricsServiceResponse
		werr := proto.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("decodeResponse error %v, proto.Unmarshal error %v", err, werr)
		}
		if err != nil {
			return
		}
		ps := want.GetPartialSuccess()
		if got.Rejected != ps.GetRejectedDataPoints() || got.Message != ps.GetErrorMessage() {
			t.Fatalf("decodeResponse %+v, proto.Unmarshal %v", got, ps)
		}
	})
}
