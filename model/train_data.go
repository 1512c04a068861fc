package model

import (
	"fmt"
	"slices"
)

// trainSet is the training data encoded for the objective, laid out like
// CRFsuite's crf1de_t so that every sum runs in CRFsuite's order.
//
// Feature ids follow crf1d_feature.c, whose AVL tree sorts features by
// (type, source, destination): first the state features ordered by
// (attribute id, label id), then the transition features ordered by
// (from, to). That order fixes the order of the sums inside L-BFGS (dot
// products, norms), so it must match for the logs to match.
type trainSet struct {
	L, A   int
	labels []string // label names in id order (first appearance)
	attrs  []string // attribute names in id order (first appearance)

	// State features of attribute a are the ids attrFeat[a] … attrFeat[a+1]−1,
	// in label order; featLabel[f] is the label of state feature f. This is
	// CRFsuite's attribute → feature reference list, flattened.
	attrFeat  []int32
	featLabel []int32
	numState  int
	// transFid[i*L+j] is the id of the transition feature i → j, or −1.
	transFid []int32
	K        int // number of features
	// negFreq[f] is minus the observation expectation of feature f (the sum
	// of its values over the data, in data order): the gradient's start.
	negFreq []float64

	// Sequences, flattened: the items of sequence s are seqItem[s] …
	// seqItem[s+1]−1 and label[i] is the label of item i.
	seqItem []int32
	label   []int32
	// The state-feature firings of sequence s are occ[seqOcc[s] :
	// seqOcc[s+1]], in CRFsuite's order: items in order, their attributes
	// in order, each attribute's features in id order.
	seqOcc []int32
	occ    []trainOcc
	maxT   int
	items  int
}

// trainOcc is one firing of a state feature: feature fid, at position pos =
// t·L + label within its sequence's T×L score matrix, with value v. Only
// attributes with a non-zero value fire: a zero adds w·0 = ±0 to a score and
// p·0 to a gradient, which leaves every finite sum bit for bit unchanged.
type trainOcc struct {
	fid, pos int32
	v        float64
}

// labelFreq is one node of an attribute's linked list of labels seen with it.
type labelFreq struct {
	label int32
	next  int32
	freq  float64
}

// newTrainSet interns labels and attributes in order of first appearance
// (as CRFsuite's Trainer::append does), generates the features as
// crf1df_generate does with minfreq 0, and flattens the sequences.
func newTrainSet(data []Example, possibleTransitions bool) (*trainSet, error) {
	ts := &trainSet{}
	labelIndex := make(map[string]int32)
	attrIndex := make(map[string]int32)

	nItems, nInst := 0, 0
	for _, ex := range data {
		nItems += len(ex.Items)
		for _, item := range ex.Items {
			nInst += len(item)
		}
	}
	ts.items = nItems
	ts.seqItem = make([]int32, 0, len(data)+1)
	ts.label = make([]int32, 0, nItems)
	itemEnd := make([]int32, 0, nItems)
	instAttr := make([]int32, 0, nInst)
	instVal := make([]float64, 0, nInst)

	// Each attribute keeps a linked list of the labels it was seen with and
	// their observation expectations, accumulated in data order.
	var head []int32
	nodes := make([]labelFreq, 0, nInst/4+16)

	ts.seqItem = append(ts.seqItem, 0)
	for _, ex := range data {
		if len(ex.Items) > ts.maxT {
			ts.maxT = len(ex.Items)
		}
		for t, item := range ex.Items {
			for _, f := range item {
				a, ok := attrIndex[f.Name]
				if !ok {
					if len(ts.attrs) >= MaxAttributes {
						return nil, fmt.Errorf("%w: more than %d distinct attributes", ErrInvalidTraining, MaxAttributes)
					}
					a = int32(len(ts.attrs))
					attrIndex[f.Name] = a
					ts.attrs = append(ts.attrs, f.Name)
					head = append(head, -1)
				}
				instAttr = append(instAttr, a)
				instVal = append(instVal, f.Value)
			}
			y, ok := labelIndex[ex.Labels[t]]
			if !ok {
				if len(ts.labels) >= MaxLabels {
					return nil, fmt.Errorf("%w: more than %d distinct labels", ErrInvalidTraining, MaxLabels)
				}
				y = int32(len(ts.labels))
				labelIndex[ex.Labels[t]] = y
				ts.labels = append(ts.labels, ex.Labels[t])
			}
			// State features (attribute, label of the item), zero values too.
			for k := len(instAttr) - len(item); k < len(instAttr); k++ {
				a := instAttr[k]
				n := head[a]
				for n >= 0 && nodes[n].label != y {
					n = nodes[n].next
				}
				if n < 0 {
					n = int32(len(nodes))
					nodes = append(nodes, labelFreq{label: y, next: head[a]})
					head[a] = n
				}
				nodes[n].freq += instVal[k]
			}
			ts.label = append(ts.label, y)
			itemEnd = append(itemEnd, int32(len(instAttr)))
		}
		ts.seqItem = append(ts.seqItem, int32(len(ts.label)))
	}
	L, A := len(ts.labels), len(ts.attrs)
	ts.L, ts.A = L, A
	if len(nodes)+L*L > MaxFeatures {
		return nil, fmt.Errorf("%w: %d features (max %d)", ErrInvalidTraining, len(nodes)+L*L, MaxFeatures)
	}

	// State feature ids: by attribute, then by label.
	ts.attrFeat = make([]int32, A+1)
	ts.featLabel = make([]int32, 0, len(nodes))
	freq := make([]float64, 0, len(nodes)+L*L)
	var scratch []labelFreq
	for a := 0; a < A; a++ {
		ts.attrFeat[a] = int32(len(ts.featLabel))
		scratch = scratch[:0]
		for n := head[a]; n >= 0; n = nodes[n].next {
			scratch = append(scratch, nodes[n])
		}
		slices.SortFunc(scratch, func(p, q labelFreq) int { return int(p.label) - int(q.label) })
		for _, nf := range scratch {
			ts.featLabel = append(ts.featLabel, nf.label)
			freq = append(freq, nf.freq)
		}
	}
	ts.attrFeat[A] = int32(len(ts.featLabel))
	ts.numState = len(ts.featLabel)

	// Transition features: observed ones (frequency = count), plus every
	// pair when possibleTransitions (frequency 0 if unobserved).
	transFreq := make([]float64, L*L)
	seen := make([]bool, L*L)
	for s := 0; s+1 < len(ts.seqItem); s++ {
		for t := ts.seqItem[s] + 1; t < ts.seqItem[s+1]; t++ {
			k := int(ts.label[t-1])*L + int(ts.label[t])
			transFreq[k]++
			seen[k] = true
		}
	}
	ts.transFid = make([]int32, L*L)
	for k := range ts.transFid {
		if seen[k] || possibleTransitions {
			ts.transFid[k] = int32(len(freq))
			freq = append(freq, transFreq[k])
		} else {
			ts.transFid[k] = -1
		}
	}
	ts.K = len(freq)
	ts.negFreq = make([]float64, ts.K)
	for i, f := range freq {
		if f != 0 {
			ts.negFreq[i] = -f
		}
		// else +0: CRFsuite's −0 becomes +0 at the first "+= 0" of the
		// model expectation, which the zero-value occurrences we drop
		// would have made.
	}

	// The firings that matter to the objective: non-zero values.
	nOcc := 0
	for k, v := range instVal {
		if v != 0 {
			a := instAttr[k]
			nOcc += int(ts.attrFeat[a+1] - ts.attrFeat[a])
		}
	}
	ts.seqOcc = make([]int32, 0, len(data)+1)
	ts.occ = make([]trainOcc, 0, nOcc)
	start := 0
	for s := 0; s+1 < len(ts.seqItem); s++ {
		ts.seqOcc = append(ts.seqOcc, int32(len(ts.occ)))
		first := int(ts.seqItem[s])
		for i := first; i < int(ts.seqItem[s+1]); i++ {
			end := int(itemEnd[i])
			base := int32((i - first) * L)
			for k := start; k < end; k++ {
				v := instVal[k]
				if v == 0 {
					continue
				}
				a := instAttr[k]
				for f := ts.attrFeat[a]; f < ts.attrFeat[a+1]; f++ {
					ts.occ = append(ts.occ, trainOcc{fid: f, pos: base + ts.featLabel[f], v: v})
				}
			}
			start = end
		}
	}
	ts.seqOcc = append(ts.seqOcc, int32(len(ts.occ)))
	return ts, nil
}

// buildModel stores w the way crf1de_save_model does: features whose weight
// is exactly 0 are dropped, attributes left without a feature are dropped,
// and the remaining attributes keep their relative order.
func (ts *trainSet) buildModel(w []float64, meta Meta) (*Model, error) {
	L := ts.L
	var attrs []string
	var state []float64
	for a := 0; a < ts.A; a++ {
		lo, hi := ts.attrFeat[a], ts.attrFeat[a+1]
		active := false
		for f := lo; f < hi; f++ {
			if w[f] != 0 {
				active = true
				break
			}
		}
		if !active {
			continue
		}
		row := len(state)
		attrs = append(attrs, ts.attrs[a])
		state = append(state, make([]float64, L)...)
		for f := lo; f < hi; f++ {
			if w[f] != 0 {
				state[row+int(ts.featLabel[f])] = w[f]
			}
		}
	}
	trans := make([]float64, L*L)
	for k, fid := range ts.transFid {
		if fid >= 0 && w[fid] != 0 {
			trans[k] = w[fid]
		}
	}
	return New(ts.labels, attrs, state, trans, meta)
}
