package otlp

import (
	"cmp"
	"errors"
	"fmt"
	"unicode/utf8"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The validation walk reads a request's wire format once, guided by the
// ExportMetricsServiceRequest descriptor, without building a message: it
// accepts exactly what the protobuf runtime's Unmarshal with
// RecursionLimit maxDepth accepts (FuzzWalkAgreesWithProtobuf holds it to
// that), and estimates what pdata's decoder will allocate, so the
// in-flight budget is charged before the decode and not after.

// Why a body is not an OTLP metrics request; the receiver answers 400.
var (
	errTooDeep   = fmt.Errorf("messages nested over %d deep", maxDepth)
	errMalformed = errors.New("malformed protobuf")
	errUTF8      = errors.New("a string field is not valid UTF-8")
)

type kind uint8

const (
	kindUnknown kind = iota // not in the descriptor: skipped as the runtime skips it
	kindMessage
	kindString // UTF-8 checked, as the runtime does for proto3 strings
	kindBytes
	kindVarint
	kindFixed32
	kindFixed64
)

// field is what the walk knows of one field number of a message.
type field struct {
	kind kind
	list bool   // repeated: a scalar may come packed
	msg  *shape // kindMessage
	// cost is charged per occurrence (per element of a packed list).
	cost int64
}

// shape is one message type: its fields by number.
type shape struct {
	name   protoreflect.FullName
	fields []field // index: field number; numbers past the end are unknown
	cost   int64   // charged per message
}

// Decoded cost: what pdata's decoder allocates (heap, garbage from
// growing slices included: runtime.MemStats.TotalAlloc), measured per
// element by TestDecodeCostBoundsPdata's shapes (pdata v1.69, amd64,
// 100,000 elements; Go grows a long slice by 1.25x, so a long repeated
// field allocates ~5 times its final array). Messages in repeated fields are the amplification: an empty
// Exemplar is 2 bytes on the wire and 403 decoded, so a body of empty
// ones decodes to ~200x its size. A message type is charged its
// messageCost wherever it appears (over-charging the few held inline),
// others messageCostDefault (the singular wrappers: Gauge, Resource, ...,
// 37 bytes at most measured). The test fails, naming the shape, if pdata
// ever allocates more than the walk charges.
var messageCost = map[protoreflect.FullName]int64{
	"opentelemetry.proto.metrics.v1.ResourceMetrics":                  192, // measured 174
	"opentelemetry.proto.metrics.v1.ScopeMetrics":                     176, // 158
	"opentelemetry.proto.metrics.v1.Metric":                           160, // 142
	"opentelemetry.proto.metrics.v1.NumberDataPoint":                  160, // 142
	"opentelemetry.proto.metrics.v1.SummaryDataPoint":                 160, // 142
	"opentelemetry.proto.metrics.v1.HistogramDataPoint":               224, // 206
	"opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint":    272, // 254
	"opentelemetry.proto.metrics.v1.Exemplar":                         432, // 403
	"opentelemetry.proto.metrics.v1.SummaryDataPoint.ValueAtQuantile": 72,  // 62
	"opentelemetry.proto.common.v1.KeyValue":                          240, // 222
	"opentelemetry.proto.common.v1.AnyValue":                          96,  // 90
	"opentelemetry.proto.common.v1.EntityRef":                         144, // 126
}

const (
	messageCostDefault = 48
	// A scalar in a oneof (AnyValue's values, a point's as_double) is a
	// small allocation per occurrence.
	oneofCost = 24
	// An element of a repeated scalar, 1 byte on the wire for a small
	// varint, grows an 8-byte slice.
	listScalarCost = 48
	// An element of a repeated string grows a 16-byte slice.
	listStringCost = 128
	// Strings and bytes are copied: their length plus this.
	stringCost = 8
	// Unknown fields are charged per byte as if they were empty
	// Exemplars, the costliest message per wire byte: a newer sender's
	// fields that pdata knows and the descriptor does not are decoded by
	// pdata; real senders send few and small ones.
	unknownByteCost = 432 / 2
)

// request is the shape of ExportMetricsServiceRequest.
var request = newShape((&colmetrics.ExportMetricsServiceRequest{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]*shape{})

func newShape(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*shape) *shape {
	if s, ok := seen[md.FullName()]; ok {
		return s // recursive types (AnyValue, ArrayValue, KeyValueList) share one shape
	}
	s := &shape{name: md.FullName(), cost: cmp.Or(messageCost[md.FullName()], messageCostDefault)}
	seen[md.FullName()] = s
	fds := md.Fields()
	top := 0
	for i := range fds.Len() {
		top = max(top, int(fds.Get(i).Number()))
	}
	s.fields = make([]field, top+1)
	for i := range fds.Len() {
		fd := fds.Get(i)
		f := field{list: fd.IsList()}
		switch fd.Kind() {
		case protoreflect.MessageKind:
			f.kind, f.msg = kindMessage, newShape(fd.Message(), seen)
		case protoreflect.StringKind:
			f.kind = kindString
		case protoreflect.BytesKind:
			f.kind = kindBytes
		case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
			f.kind = kindVarint
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			f.kind = kindFixed32
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			f.kind = kindFixed64
		default:
			// Groups (and maps, message-kind): OTLP has none, and
			// TestShapeCoversTheDescriptor fails if one appears.
			f.kind = kindUnknown
		}
		switch {
		case fd.IsMap():
			f.kind = kindUnknown
		case f.kind == kindMessage:
			// the message's own cost is charged when it is walked
		case f.list && (f.kind == kindString || f.kind == kindBytes):
			f.cost = listStringCost
		case f.list:
			f.cost = listScalarCost
		case fd.ContainingOneof() != nil:
			f.cost = oneofCost
		}
		s.fields[fd.Number()] = f
	}
	return s
}

// validate checks body as an ExportMetricsServiceRequest, as the
// protobuf runtime's Unmarshal with RecursionLimit maxDepth would, and
// returns what pdata is estimated to allocate decoding it.
func validate(body []byte) (int64, error) {
	var w walk
	if err := w.message(body, request, 1); err != nil {
		return 0, err
	}
	return w.cost, nil
}

// walk is one request's validation pass.
type walk struct {
	cost int64
}

// message walks b as one message of shape s, nested depth deep (the
// request is 1). It mirrors the runtime's unmarshalPointerEager, with
// its fast paths for one-byte tags and lengths.
func (w *walk) message(b []byte, s *shape, depth int) error {
	if depth > maxDepth {
		return errTooDeep
	}
	w.cost += s.cost
	for len(b) > 0 {
		var num protowire.Number
		var typ protowire.Type
		if b[0] < 0x80 {
			num, typ = protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
			if num == 0 {
				return errMalformed
			}
			b = b[1:]
		} else {
			var n int
			num, typ, n = protowire.ConsumeTag(b)
			if n < 0 || num > protowire.MaxValidNumber {
				return errMalformed
			}
			b = b[n:]
		}
		if typ == protowire.EndGroupType {
			return errMalformed // no group is open at a message's level
		}
		var n int
		var err error
		if int(num) < len(s.fields) && s.fields[num].kind != kindUnknown {
			n, err = w.field(b, &s.fields[num], typ, depth)
			if err != nil {
				return err
			}
		} else {
			n = -1
		}
		if n < 0 { // unknown, or not the field's wire type: the runtime skips it as unknown
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errMalformed
			}
			w.cost += int64(n) * unknownByteCost
		}
		b = b[n:]
	}
	return nil
}

// field consumes one occurrence of f from b and returns its length, or
// -1 when typ is not f's wire type.
func (w *walk) field(b []byte, f *field, typ protowire.Type, depth int) (int, error) {
	switch typ {
	case protowire.BytesType:
		var v []byte
		n := -1
		if len(b) > 0 && b[0] < 0x80 {
			if l := int(b[0]); l < len(b) {
				v, n = b[1:1+l], 1+l
			}
		} else {
			v, n = protowire.ConsumeBytes(b)
		}
		if n < 0 {
			return 0, errMalformed
		}
		switch f.kind {
		case kindMessage:
			return n, w.message(v, f.msg, depth+1)
		case kindString:
			if !utf8.Valid(v) {
				return 0, errUTF8
			}
		case kindBytes:
		default:
			if !f.list {
				return -1, nil
			}
			return n, w.packed(v, f)
		}
		w.cost += f.cost + int64(len(v)) + stringCost
		return n, nil
	case protowire.VarintType:
		if f.kind != kindVarint {
			return -1, nil
		}
		w.cost += f.cost
		if len(b) > 0 && b[0] < 0x80 {
			return 1, nil
		}
		if _, n := protowire.ConsumeVarint(b); n >= 0 {
			return n, nil
		}
	case protowire.Fixed64Type:
		if f.kind != kindFixed64 {
			return -1, nil
		}
		w.cost += f.cost
		if len(b) >= 8 {
			return 8, nil
		}
	case protowire.Fixed32Type:
		if f.kind != kindFixed32 {
			return -1, nil
		}
		w.cost += f.cost
		if len(b) >= 4 {
			return 4, nil
		}
	default:
		return -1, nil
	}
	return 0, errMalformed
}

// packed walks the payload of a packed repeated scalar.
func (w *walk) packed(v []byte, f *field) error {
	elems := 0
	switch f.kind {
	case kindVarint:
		for len(v) > 0 {
			_, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return errMalformed
			}
			v = v[n:]
			elems++
		}
	case kindFixed32, kindFixed64:
		size := 4
		if f.kind == kindFixed64 {
			size = 8
		}
		if len(v)%size != 0 {
			return errMalformed
		}
		elems = len(v) / size
	}
	w.cost += int64(elems) * f.cost
	return nil
}
