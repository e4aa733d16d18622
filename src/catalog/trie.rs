//! The prefix tree of title token sequences that constrains decoding: every path from
//! the root spells one title followed by the answer-end token, and the node after that
//! token lists the catalogue entries with this title.
//!
//! The nodes live in a persistent vector (`imbl`), so a catalogue update copies only the
//! nodes on the changed path (each with its list of children), never the whole tree, and
//! the snapshot before it stays intact for the queries reading it.

#[derive(Debug, Clone, Default)]
struct Node {
    /// `(token, child node)`, sorted by token.
    children: Children,
    /// Catalogue indices whose title ends here (only on nodes reached by answer-end).
    items: Option<Box<[u32]>>,
    /// Catalogue entries below this node, itself included.
    count: u32,
}

/// A node's children. Most nodes of a large catalogue's tree lie on one title's path
/// below the point where it parts from the others, so they have one child: it is held in
/// the node, with no allocation of its own. (A million titles make ~10 million nodes; a
/// `Vec` per node cost ~70 bytes more each.)
#[derive(Debug, Clone, Default)]
enum Children {
    #[default]
    None,
    One((u32, u32)),
    Many(Box<[(u32, u32)]>),
}

impl Children {
    fn as_slice(&self) -> &[(u32, u32)] {
        match self {
            Children::None => &[],
            Children::One(pair) => std::slice::from_ref(pair),
            Children::Many(pairs) => pairs,
        }
    }

    fn from_vec(mut pairs: Vec<(u32, u32)>) -> Self {
        match pairs.len() {
            0 => Children::None,
            1 => Children::One(pairs[0]),
            _ => {
                pairs.shrink_to_fit();
                Children::Many(pairs.into_boxed_slice())
            }
        }
    }

    fn insert(&mut self, at: usize, pair: (u32, u32)) {
        let mut pairs = self.as_slice().to_vec();
        pairs.insert(at, pair);
        *self = Children::from_vec(pairs);
    }

    fn remove(&mut self, at: usize) {
        let mut pairs = self.as_slice().to_vec();
        pairs.remove(at);
        *self = Children::from_vec(pairs);
    }
}

/// The root node: the empty prefix. (Crate-visible only, so that the C header, which
/// cbindgen generates from every public constant, does not pick it up.)
pub(crate) const ROOT: u32 = 0;

#[derive(Debug, Clone)]
pub struct TitleTrie {
    nodes: imbl::Vector<Node>,
}

impl Default for TitleTrie {
    fn default() -> Self {
        TitleTrie {
            nodes: imbl::Vector::unit(Node::default()),
        }
    }
}

impl TitleTrie {
    /// Adds a path (title tokens then answer-end) ending in catalogue entry `item`.
    pub fn insert(&mut self, path: &[u32], item: u32) {
        let mut node = ROOT;
        self.nodes[node as usize].count += 1;
        for &tok in path {
            node = match self.child(node, tok) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len() as u32;
                    self.nodes.push_back(Node::default());
                    let children = &mut self.nodes[node as usize].children;
                    let at = children.as_slice().partition_point(|&(t, _)| t < tok);
                    children.insert(at, (tok, c));
                    c
                }
            };
            self.nodes[node as usize].count += 1;
        }
        let items = &mut self.nodes[node as usize].items;
        let mut held = items.take().map(Vec::from).unwrap_or_default();
        held.push(item);
        *items = Some(held.into_boxed_slice());
    }

    /// Removes entry `item` from the end of `path`; a branch left with no entries is cut
    /// from its parent. Returns false, changing nothing, when `item` is not there.
    pub fn remove(&mut self, path: &[u32], item: u32) -> bool {
        let Some(nodes) = self.walk(path) else {
            return false;
        };
        let end = *nodes.last().unwrap_or(&ROOT);
        let Some(at) = self.items(end).iter().position(|&i| i == item) else {
            return false;
        };
        let items = &mut self.nodes[end as usize].items;
        let mut held = items.take().map(Vec::from).unwrap_or_default();
        held.remove(at);
        *items = (!held.is_empty()).then(|| held.into_boxed_slice());
        self.nodes[ROOT as usize].count -= 1;
        let mut parent = ROOT;
        for (&node, &tok) in nodes.iter().zip(path) {
            let n = &mut self.nodes[node as usize];
            n.count -= 1;
            if n.count == 0 {
                // Nothing below: cut the branch here (its nodes stay, unreachable).
                let children = &mut self.nodes[parent as usize].children;
                if let Ok(i) = children.as_slice().binary_search_by_key(&tok, |&(t, _)| t) {
                    children.remove(i);
                }
                break;
            }
            parent = node;
        }
        true
    }

    pub fn child(&self, node: u32, token: u32) -> Option<u32> {
        let children = self.children(node);
        children
            .binary_search_by_key(&token, |&(t, _)| t)
            .ok()
            .map(|i| children[i].1)
    }

    pub fn children(&self, node: u32) -> &[(u32, u32)] {
        self.nodes[node as usize].children.as_slice()
    }

    /// Catalogue entries completed at `node`.
    pub fn items(&self, node: u32) -> &[u32] {
        self.nodes[node as usize].items.as_deref().unwrap_or(&[])
    }

    /// Catalogue entries at or below `node`.
    pub fn count(&self, node: u32) -> u32 {
        self.nodes[node as usize].count
    }

    /// The nodes along `path` from the root (root excluded), or `None` if it leaves the tree.
    pub fn walk(&self, path: &[u32]) -> Option<Vec<u32>> {
        let mut node = ROOT;
        let mut out = Vec::with_capacity(path.len());
        for &t in path {
            node = self.child(node, t)?;
            out.push(node);
        }
        Some(out)
    }

    /// Nodes held, reachable or cut by removals.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The bytes the tree's nodes and their child and item lists take: an account of
    /// what it holds, not counting the persistent vector's own index nodes or the
    /// allocator's rounding.
    pub fn bytes(&self) -> usize {
        let lists: usize = self
            .nodes
            .iter()
            .map(|n| {
                let children = match &n.children {
                    Children::Many(pairs) => std::mem::size_of_val(&pairs[..]),
                    _ => 0,
                };
                children + n.items.as_deref().map_or(0, std::mem::size_of_val)
            })
            .sum();
        self.nodes.len() * std::mem::size_of::<Node>() + lists
    }
}
