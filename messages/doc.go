// Package messages holds Squall's protobuf wire messages: Event and
// EventBatch, used for protobuf input (Content-Type application/x-protobuf)
// and between nodes.
//
// squall.pb.go is generated from squall.proto by scripts/protoc.sh (make
// proto) and committed, so a build needs no protoc. Package event converts
// between these messages and event.Event (event.ToProto, event.FromProto,
// event.AppendProto and Decoder.Decode with FormatProto).
package messages
