package model

// Attr is one attribute of one item: an attribute id of the model (negative
// for an attribute the model does not know, which scores nothing) and its value.
type Attr struct {
	ID    int32
	Value float64
}

// Instance is a sequence of items, each a list of attributes, stored flat so
// that one Instance can be reset and refilled without allocating.
type Instance struct {
	Attrs []Attr
	// Ends[t] is the end offset in Attrs of item t; item t starts at Ends[t-1].
	Ends []int32
}

// Reset empties the instance, keeping its memory.
func (in *Instance) Reset() {
	in.Attrs = in.Attrs[:0]
	in.Ends = in.Ends[:0]
}

// Add appends an attribute to the item being built.
func (in *Instance) Add(id int32, value float64) {
	in.Attrs = append(in.Attrs, Attr{ID: id, Value: value})
}

// EndItem closes the item being built; the next Add starts a new one.
func (in *Instance) EndItem() { in.Ends = append(in.Ends, int32(len(in.Attrs))) }

// Len is the number of items.
func (in *Instance) Len() int { return len(in.Ends) }

// Item returns the attributes of item t.
func (in *Instance) Item(t int) []Attr {
	start := int32(0)
	if t > 0 {
		start = in.Ends[t-1]
	}
	return in.Attrs[start:in.Ends[t]]
}
