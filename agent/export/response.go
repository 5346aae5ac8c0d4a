package export

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// partialSuccess is an ExportMetricsServiceResponse's partial_success:
// the data points the node did not store, and why.
type partialSuccess struct {
	Rejected int64
	Message  string
}

// Field numbers in opentelemetry/proto/collector/metrics/v1.
const (
	fieldPartialSuccess = 1 // ExportMetricsServiceResponse.partial_success
	fieldRejected       = 1 // ExportMetricsPartialSuccess.rejected_data_points
	fieldErrorMessage   = 2 // ExportMetricsPartialSuccess.error_message
)

var errBadResponse = errors.New("malformed ExportMetricsServiceResponse")

// decodeResponse reads the partial_success of an encoded
// ExportMetricsServiceResponse as proto.Unmarshal would (repeated
// messages merge, the last scalar wins, unknown fields are skipped). The
// generated collector package is not used because it links gRPC into
// the agent.
func decodeResponse(b []byte) (partialSuccess, error) {
	var ps partialSuccess
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldPartialSuccess || typ != protowire.BytesType {
			return nil
		}
		inner, _ := protowire.ConsumeBytes(v)
		return eachField(inner, func(num protowire.Number, typ protowire.Type, v []byte) error {
			switch {
			case num == fieldRejected && typ == protowire.VarintType:
				n, _ := protowire.ConsumeVarint(v)
				ps.Rejected = int64(n)
			case num == fieldErrorMessage && typ == protowire.BytesType:
				s, _ := protowire.ConsumeBytes(v)
				if !utf8.Valid(s) {
					return errBadResponse // proto3 strings are UTF-8
				}
				ps.Message = string(s)
			}
			return nil
		})
	})
	return ps, err
}

// eachField calls fn with each field of message b and its encoded value
// (v is well-formed for typ).
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		// ConsumeTag takes numbers up to MaxInt32; protobuf's end at 2^29-1.
		if n < 0 || !num.IsValid() {
			return errBadResponse
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return errBadResponse
		}
		if err := fn(num, typ, b[n:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}
