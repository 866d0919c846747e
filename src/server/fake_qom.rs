//! The fake QEMU's QOM tree: user objects under `/objects`, devices under
//! `/machine/peripheral` and `/machine/peripheral-anon`, as `-M pc -nodefaults` has them,
//! with the commands that change and read them (`object-add`, `object-del`, `device_add`,
//! `device_del`, `qom-list`, `qom-get`, `qom-set`).
//!
//! Each answer was compared with qemu-system-x86_64 10.0.2. Whatever the model cannot
//! answer exactly is `None` here, which the fake turns into "does not model".

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::qapi;
use super::Outcome;

/// The machine type of `-M pc` on 10.0.
const MACHINE_TYPE: &str = "pc-i440fx-10.0-machine";

/// The size of `pc.ram` (the default 128 MiB of `-M pc`).
const PC_RAM_SIZE: u64 = 128 << 20;

/// The largest `memory-backend-ram` the model creates (bigger ones depend on the host).
const MAX_RAM_SIZE: u64 = 1 << 30;

/// PCI devices the model plugs in before it stops answering (`-M pc` has 32 slots, 2
/// taken by the host bridge and the PIIX3).
const MAX_PCI: usize = 29;

/// The properties of a `memory-backend-ram` as `qom-list` prints them, but for the child
/// memory region (`ID[0]`), which comes last.
const RAM_PROPS: &[(&str, &str)] = &[
    ("type", "string"),
    ("share", "bool"),
    ("size", "int"),
    ("dump", "bool"),
    ("prealloc-threads", "int"),
    ("x-use-canonical-path-for-ramblock-id", "bool"),
    ("policy", "HostMemPolicy"),
    ("prealloc-context", "link<thread-context>"),
    ("prealloc", "bool"),
    ("reserve", "bool"),
    ("host-nodes", "int"),
    ("merge", "bool"),
];

const SECRET_PROPS: &[(&str, &str)] = &[
    ("type", "string"),
    ("iv", "string"),
    ("keyid", "string"),
    ("format", "QCryptoSecretFormat"),
    ("file", "string"),
    ("data", "string"),
];

const PCI_TESTDEV_PROPS: &[(&str, &str)] = &[
    ("type", "string"),
    ("parent_bus", "link<bus>"),
    ("realized", "bool"),
    ("hotplugged", "bool"),
    ("hotpluggable", "bool"),
    ("failover_pair_id", "str"),
    ("romfile", "str"),
    ("x-pcie-ext-tag", "bool"),
    ("addr", "str"),
    ("romsize", "uint32"),
    ("x-pcie-lnksta-dllla", "bool"),
    ("rombar", "int32"),
    ("x-max-bounce-buffer-size", "size"),
    ("x-pcie-ari-nextfn-1", "bool"),
    ("x-pcie-err-unc-mask", "bool"),
    ("x-pcie-extcap-init", "bool"),
    ("busnr", "busnr"),
    ("acpi-index", "uint32"),
    ("multifunction", "bool"),
    ("legacy-addr", "str"),
    ("membar", "size"),
    ("pci-testdev-mmio[0]", "child<memory-region>"),
    ("bus master[0]", "child<memory-region>"),
    ("bus master container[0]", "child<memory-region>"),
    ("pci-testdev-portio[0]", "child<memory-region>"),
];

/// The device models: PCI ones (unplugged only with the guest's help, which never comes)
/// and USB ones (unplugged at once).
/// The first slot of `pci.0` that `-M pc` leaves free (0: the host bridge, 1: PIIX3's
/// functions).
const FIRST_FREE_SLOT: u8 = 2;

/// The first input handler id left for devices: the PS/2 keyboard has 1, the PS/2 mouse 2.
const FIRST_INPUT_ID: u32 = 3;

/// `query-pci`'s facts of a modelled PCI type, as QEMU 10.0.2 shows them before a guest
/// maps the BARs: the interrupt pin, whether an `irq` line shows, the class and ids, and
/// the regions.
fn pci_info(driver: &str) -> (u8, bool, &'static str, &'static str) {
    match driver {
        "pci-testdev" => (
            0,
            false,
            r#""class_info": {"class": 255}, "id": {"device": 5, "vendor": 6966, "subsystem": 4352, "subsystem-vendor": 6900}"#,
            r#"[{"bar": 0, "type": "memory", "address": -1, "size": 4096, "prefetch": false, "mem_type_64": false}, {"bar": 1, "type": "io", "address": -1, "size": 256}]"#,
        ),
        "virtio-rng-pci" => (
            1,
            true,
            r#""class_info": {"class": 255}, "id": {"device": 4101, "vendor": 6900, "subsystem": 4, "subsystem-vendor": 6900}"#,
            r#"[{"bar": 0, "type": "io", "address": -1, "size": 32}, {"bar": 1, "type": "memory", "address": -1, "size": 4096, "prefetch": false, "mem_type_64": false}, {"bar": 4, "type": "memory", "address": -1, "size": 16384, "prefetch": true, "mem_type_64": true}]"#,
        ),
        _ => (
            4,
            true,
            r#""class_info": {"desc": "USB controller", "class": 3075}, "id": {"device": 28704, "vendor": 32902, "subsystem": 4352, "subsystem-vendor": 6900}"#,
            r#"[{"bar": 4, "type": "io", "address": -1, "size": 32}]"#,
        ),
    }
}

/// `query-pci`'s entries for the board's own functions (`-M pc -nodefaults`), by slot.
const BOARD_PCI: &str = concat!(
    r#"{"bus": 0, "slot": 0, "function": 0, "class_info": {"desc": "Host bridge", "class": 1536}, "id": {"device": 4663, "vendor": 32902, "subsystem": 4352, "subsystem-vendor": 6900}, "irq_pin": 0, "qdev_id": "", "regions": []}, "#,
    r#"{"bus": 0, "slot": 1, "function": 0, "class_info": {"desc": "ISA bridge", "class": 1537}, "id": {"device": 28672, "vendor": 32902, "subsystem": 4352, "subsystem-vendor": 6900}, "irq_pin": 0, "qdev_id": "", "regions": []}, "#,
    r#"{"bus": 0, "slot": 1, "function": 1, "class_info": {"desc": "IDE controller", "class": 257}, "id": {"device": 28688, "vendor": 32902, "subsystem": 4352, "subsystem-vendor": 6900}, "irq_pin": 0, "qdev_id": "", "regions": [{"bar": 4, "type": "io", "address": -1, "size": 16}]}, "#,
    r#"{"bus": 0, "slot": 1, "function": 3, "class_info": {"desc": "Bridge", "class": 1664}, "id": {"device": 28947, "vendor": 32902, "subsystem": 4352, "subsystem-vendor": 6900}, "irq": 0, "irq_pin": 1, "qdev_id": "", "regions": []}"#,
);

const PCI_MODELS: &[&str] = &["pci-testdev", "virtio-rng-pci", "piix3-usb-uhci"];
const USB_MODELS: &[&str] = &["usb-tablet", "usb-kbd", "usb-mouse"];

/// Names QEMU takes as aliases of device types (`qdev_alias_table`): not errors, but not
/// modelled either.
fn may_be_alias(name: &str) -> bool {
    name.starts_with("virtio-") || matches!(name, "e1000-82540em" | "ahci" | "lsi")
}

#[derive(Debug)]
enum Obj {
    Ram { size: u64, in_use: bool },
    Secret { data: String },
}

impl Obj {
    fn type_name(&self) -> &'static str {
        match self {
            Obj::Ram { .. } => "memory-backend-ram",
            Obj::Secret { .. } => "secret",
        }
    }
}

#[derive(Debug)]
struct Dev {
    driver: &'static str,
    /// `device_del` asked the guest (who never answers).
    unplug: bool,
    /// A PCI device's slot on `pci.0` (function 0).
    slot: Option<u8>,
    /// A USB HID device's input handler id (`query-mice`'s `index`).
    input: Option<u32>,
}

impl Dev {
    fn is_usb(&self) -> bool {
        USB_MODELS.contains(&self.driver)
    }
}

/// A container object: its children, and the history of its property table (whose
/// iteration order `qom-list` shows).
#[derive(Debug)]
struct Container<T> {
    history: Vec<(bool, String)>,
    items: BTreeMap<String, T>,
}

impl<T> Container<T> {
    fn new() -> Self {
        Container {
            history: Vec::new(),
            items: BTreeMap::new(),
        }
    }

    fn insert(&mut self, name: &str, item: T) {
        self.history.push((true, name.to_owned()));
        self.items.insert(name.to_owned(), item);
    }

    fn remove(&mut self, name: &str) -> Option<T> {
        let item = self.items.remove(name)?;
        self.history.push((false, name.to_owned()));
        Some(item)
    }

    /// A child added and removed at once (a creation that failed after the child was
    /// added): the table remembers it.
    fn touch(&mut self, name: &str) {
        self.history.push((true, name.to_owned()));
        self.history.push((false, name.to_owned()));
    }

    /// The children in the order QEMU lists them: reverse table order (its lists are
    /// built by prepending while walking the table).
    fn ordered(&self) -> Vec<(&str, &T)> {
        let order = qapi::ghash_order(&self.history);
        order
            .into_iter()
            .rev()
            .filter_map(|name| self.items.get_key_value(name))
            .map(|(name, item)| (name.as_str(), item))
            .collect()
    }

    /// `qom-list`: `type`, then the children.
    fn list(&self, type_of: impl Fn(&T) -> &'static str) -> Value {
        let mut out = vec![json!({"name": "type", "type": "string"})];
        for (name, item) in self.ordered() {
            out.push(json!({"name": name, "type": format!("child<{}>", type_of(item))}));
        }
        Value::Array(out)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Objects,
    Peripheral,
    Anon,
}

impl Which {
    fn path(self) -> &'static str {
        match self {
            Which::Objects => "/objects",
            Which::Peripheral => "/machine/peripheral",
            Which::Anon => "/machine/peripheral-anon",
        }
    }
}

/// A node of the tree a path names.
enum Node {
    Root,
    Machine,
    Container(Which),
    Object(String),
    Device(Which, String),
}

/// A path resolved: a node, no node (`DeviceNotFound` on QEMU), or a part of the tree the
/// model does not know.
enum Resolved {
    Found(Node),
    NotFound,
    Unknown,
}

/// An event to send after the reply (QEMU sends DEVICE_DELETED once the device is
/// finalized, after the command's reply).
pub(crate) type Deferred = (&'static str, Value);

/// The QOM tree of the fake.
#[derive(Debug)]
pub(crate) struct Qom {
    objects: Container<Obj>,
    peripheral: Container<Dev>,
    anon: Container<Dev>,
    anon_count: u64,
    /// The id the next input handler gets.
    next_input: u32,
}

/// QEMU's recorded answer about `/machine` (`qom-list /machine`, `qom-get /machine P`).
fn machine_reply(key: &str) -> Option<Outcome> {
    Some(match qapi::schema()?.query_reply(key)? {
        Ok(text) => Outcome::Json(text.clone()),
        Err((class, desc)) => Outcome::Error {
            class: class.clone(),
            desc: desc.clone(),
        },
    })
}

/// Whether `/machine` has the property `prop` (in QEMU's recorded `qom-list`).
fn machine_has(prop: &str) -> bool {
    let Some(Outcome::Json(list)) = machine_reply("qom-list /machine") else {
        return false;
    };
    serde_json::from_str::<Value>(&list).is_ok_and(|v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|p| p["name"] == prop))
    })
}

/// The DEVICE_DELETED events of a device that leaves, as QEMU sends them: first for its
/// children that are devices (a virtio proxy's `virtio-backend`, by path alone), then for
/// the device (`device` and `path`, or `path` alone for a device without an id).
fn deleted_events(which: Which, name: &str, dev: &Dev) -> Vec<Deferred> {
    let path = format!("{}/{name}", which.path());
    let mut events = Vec::new();
    if dev.driver.starts_with("virtio-") {
        events.push((
            "DEVICE_DELETED",
            json!({"path": format!("{path}/virtio-backend")}),
        ));
    }
    events.push((
        "DEVICE_DELETED",
        if which == Which::Peripheral {
            json!({"device": name, "path": path})
        } else {
            json!({"path": path})
        },
    ));
    events
}

fn not_found(path: &str) -> Outcome {
    Outcome::Error {
        class: "DeviceNotFound".into(),
        desc: format!("Device '{path}' not found"),
    }
}

fn prop_not_found(type_name: &str, prop: &str) -> Outcome {
    Outcome::generic_error(format!("Property '{type_name}.{prop}' not found"))
}

fn not_writable(type_name: &str, prop: &str) -> Outcome {
    Outcome::generic_error(format!("Property '{type_name}.{prop}' is not writable"))
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

impl Qom {
    pub(crate) fn new() -> Self {
        let mut objects = Container::new();
        objects.insert(
            "pc.ram",
            Obj::Ram {
                size: PC_RAM_SIZE,
                in_use: true,
            },
        );
        Qom {
            objects,
            peripheral: Container::new(),
            anon: Container::new(),
            anon_count: 0,
            next_input: FIRST_INPUT_ID,
        }
    }

    fn devices(&self, which: Which) -> &Container<Dev> {
        if which == Which::Anon {
            &self.anon
        } else {
            &self.peripheral
        }
    }

    fn all_devices(&self) -> impl Iterator<Item = &Dev> {
        self.peripheral
            .items
            .values()
            .chain(self.anon.items.values())
    }

    fn resolve(&self, path: &str) -> Resolved {
        if !path.starts_with('/') {
            // Partial paths search the whole tree, which the model does not hold.
            return Resolved::Unknown;
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let node = match parts.as_slice() {
            [] => Node::Root,
            ["machine"] => Node::Machine,
            ["objects"] => Node::Container(Which::Objects),
            ["machine", "peripheral"] => Node::Container(Which::Peripheral),
            ["machine", "peripheral-anon"] => Node::Container(Which::Anon),
            ["objects", id] => {
                if !self.objects.items.contains_key(*id) {
                    return Resolved::NotFound;
                }
                Node::Object((*id).to_owned())
            }
            ["machine", c @ ("peripheral" | "peripheral-anon"), id] => {
                let which = if *c == "peripheral" {
                    Which::Peripheral
                } else {
                    Which::Anon
                };
                if !self.devices(which).items.contains_key(*id) {
                    return Resolved::NotFound;
                }
                Node::Device(which, (*id).to_owned())
            }
            [first, ..] if !matches!(*first, "machine" | "objects" | "backend" | "chardevs") => {
                return Resolved::NotFound
            }
            [.., _] => {
                // Under a modelled container, a child that is not there ends the search.
                let known = match parts.as_slice() {
                    ["objects", id, ..] => self.objects.items.contains_key(*id),
                    ["machine", "peripheral", id, ..] => self.peripheral.items.contains_key(*id),
                    ["machine", "peripheral-anon", id, ..] => self.anon.items.contains_key(*id),
                    _ => true,
                };
                return if known {
                    Resolved::Unknown
                } else {
                    Resolved::NotFound
                };
            }
        };
        Resolved::Found(node)
    }

    /// `object-add` of a `memory-backend-ram` or a `secret` (arguments already checked
    /// against the schema).
    /// Whether `/objects` has an object with this id.
    pub(crate) fn has_object(&self, id: &str) -> bool {
        self.objects.items.contains_key(id)
    }

    pub(crate) fn object_add(&mut self, args: &Map<String, Value>) -> Option<Outcome> {
        let qom_type = str_arg(args, "qom-type")?;
        let id = str_arg(args, "id")?;
        let allowed: &[&str] = match qom_type {
            "memory-backend-ram" => &["qom-type", "id", "size"],
            "secret" => &["qom-type", "id", "data", "file"],
            _ => return None,
        };
        if args.keys().any(|k| !allowed.contains(&k.as_str())) {
            return None;
        }
        if !super::fake::id_wellformed(id) {
            return Some(Outcome::generic_error(
                "Parameter 'id' expects an identifier",
            ));
        }
        let obj = match qom_type {
            "memory-backend-ram" => {
                let size = args.get("size").and_then(Value::as_u64)?;
                if size == 0 {
                    return Some(Outcome::generic_error(
                        "property 'size' of memory-backend-ram doesn't take value '0'",
                    ));
                }
                if size > MAX_RAM_SIZE || size % 4096 != 0 {
                    return None;
                }
                Obj::Ram {
                    size,
                    in_use: false,
                }
            }
            _ => {
                if self.objects.items.contains_key(id) {
                    return Some(Self::duplicate(id));
                }
                match (str_arg(args, "data"), args.contains_key("file")) {
                    (Some(_), true) => {
                        self.objects.touch(id);
                        return Some(Outcome::generic_error(
                            "'file' and 'data' are mutually exclusive",
                        ));
                    }
                    (None, false) => {
                        self.objects.touch(id);
                        return Some(Outcome::generic_error(
                            "Either 'file' or 'data' must be provided",
                        ));
                    }
                    (Some(data), false) => Obj::Secret {
                        data: data.to_owned(),
                    },
                    (None, true) => return None,
                }
            }
        };
        if self.objects.items.contains_key(id) {
            return Some(Self::duplicate(id));
        }
        self.objects.insert(id, obj);
        Some(Outcome::empty())
    }

    fn duplicate(id: &str) -> Outcome {
        Outcome::generic_error(format!(
            "attempt to add duplicate property '{id}' to object (type 'container')"
        ))
    }

    pub(crate) fn object_del(&mut self, args: &Map<String, Value>) -> Option<Outcome> {
        let id = str_arg(args, "id")?;
        Some(match self.objects.items.get(id) {
            None => Outcome::generic_error(format!("object '{id}' not found")),
            Some(Obj::Ram { in_use: true, .. }) => {
                Outcome::generic_error(format!("object '{id}' is in use, can not be deleted"))
            }
            Some(_) => {
                self.objects.remove(id);
                Outcome::empty()
            }
        })
    }

    pub(crate) fn device_add(&mut self, args: &Map<String, Value>) -> Option<Outcome> {
        let driver = str_arg(args, "driver")?;
        match qapi::device_type(driver) {
            None if may_be_alias(driver) => return None,
            None => {
                return Some(Outcome::generic_error(format!(
                    "'{driver}' is not a valid device model name"
                )))
            }
            Some(true) => {
                return Some(Outcome::generic_error(
                    "Parameter 'driver' expects a non-abstract device type",
                ))
            }
            Some(false) => {}
        }
        let driver: &'static str = PCI_MODELS
            .iter()
            .chain(USB_MODELS)
            .find(|m| **m == driver)?;
        let usb = USB_MODELS.contains(&driver);
        match str_arg(args, "bus") {
            Some("pci.0") if !usb => {}
            Some(_) => return None,
            None => {}
        }
        if usb {
            let hosts = self
                .all_devices()
                .filter(|d| d.driver == "piix3-usb-uhci")
                .count();
            if hosts == 0 {
                return Some(Outcome::generic_error(format!(
                    "No 'usb-bus' bus found for device '{driver}'"
                )));
            }
            // A UHCI controller has two ports; QEMU adds a hub for more.
            if hosts > 1 || self.all_devices().filter(|d| d.is_usb()).count() >= 2 {
                return None;
            }
        } else if self.all_devices().filter(|d| !d.is_usb()).count() >= MAX_PCI {
            return None;
        }
        let extra: Vec<&String> = args
            .keys()
            .filter(|k| !matches!(k.as_str(), "driver" | "bus" | "id"))
            .collect();
        let bad_prop = match extra.as_slice() {
            [] => None,
            [one]
                if driver == "pci-testdev" && !PCI_TESTDEV_PROPS.iter().any(|(n, _)| n == one) =>
            {
                Some(prop_not_found(driver, one))
            }
            _ => return None,
        };
        let mut dev = Dev {
            driver,
            unplug: false,
            slot: None,
            input: None,
        };
        // Realized: a PCI device takes the first free slot (QEMU's devfn allocation); a USB
        // HID device registers an input handler, whose id QEMU never reuses.
        if bad_prop.is_none() {
            if usb {
                dev.input = Some(self.next_input);
                self.next_input = self.next_input.saturating_add(1);
            } else {
                let used: Vec<u8> = self.all_devices().filter_map(|d| d.slot).collect();
                dev.slot = (FIRST_FREE_SLOT..32).find(|s| !used.contains(s));
            }
        }
        match str_arg(args, "id") {
            Some(id) => {
                if self.peripheral.items.contains_key(id) {
                    return Some(Outcome::generic_error(format!(
                        "Duplicate device ID '{id}'"
                    )));
                }
                if let Some(e) = bad_prop {
                    self.peripheral.touch(id);
                    return Some(e);
                }
                self.peripheral.insert(id, dev);
            }
            None => {
                let name = format!("device[{}]", self.anon_count);
                self.anon_count += 1;
                if let Some(e) = bad_prop {
                    self.anon.touch(&name);
                    return Some(e);
                }
                self.anon.insert(&name, dev);
            }
        }
        Some(Outcome::empty())
    }

    /// `device_del`: the answer, and the events to send after it.
    pub(crate) fn device_del(
        &mut self,
        args: &Map<String, Value>,
    ) -> Option<(Outcome, Vec<Deferred>)> {
        let id = str_arg(args, "id")?;
        let (which, name) = if id.starts_with('/') {
            match self.resolve(id) {
                Resolved::Found(Node::Device(which, name)) => (which, name),
                Resolved::Found(_) => {
                    return Some((
                        Outcome::generic_error(format!("{id} is not a device")),
                        Vec::new(),
                    ))
                }
                Resolved::NotFound => return Some((not_found(id), Vec::new())),
                Resolved::Unknown => return None,
            }
        } else if self.peripheral.items.contains_key(id) {
            (Which::Peripheral, id.to_owned())
        } else {
            return Some((not_found(id), Vec::new()));
        };
        let container = if which == Which::Anon {
            &mut self.anon
        } else {
            &mut self.peripheral
        };
        let dev = container.items.get_mut(&name)?;
        if dev.is_usb() {
            let dev = container.remove(&name)?;
            return Some((Outcome::empty(), deleted_events(which, &name, &dev)));
        }
        // ACPI PCI hotplug: the guest is asked, and never answers; QEMU 10.0 sets no expiry
        // to the request (`pending_deleted_expires_ms` stays 0).
        if dev.unplug {
            // QEMU names the device as the request did (an id or a path).
            return Some((
                Outcome::generic_error(format!("Device {id} is already in the process of unplug")),
                Vec::new(),
            ));
        }
        dev.unplug = true;
        Some((Outcome::empty(), Vec::new()))
    }

    /// A system reset: the PCI devices whose unplug is pending leave (ACPI PCI hotplug
    /// ejects them), in slot order; returns their DEVICE_DELETED events.
    pub(crate) fn reset(&mut self) -> Vec<Deferred> {
        let mut pending: Vec<(u8, Which, String)> = [Which::Peripheral, Which::Anon]
            .into_iter()
            .flat_map(|which| {
                self.devices(which)
                    .items
                    .iter()
                    .filter(|(_, d)| d.unplug)
                    .map(move |(name, d)| (d.slot.unwrap_or(0), which, name.clone()))
            })
            .collect();
        pending.sort_by_key(|(slot, _, _)| *slot);
        let mut events = Vec::new();
        for (_, which, name) in pending {
            let container = if which == Which::Anon {
                &mut self.anon
            } else {
                &mut self.peripheral
            };
            if let Some(dev) = container.remove(&name) {
                events.extend(deleted_events(which, &name, &dev));
            }
        }
        events
    }

    /// `query-memdev`: the memory backends under `/objects`, in `qom-list`'s order.
    pub(crate) fn query_memdev(&self) -> Outcome {
        let entries: Vec<String> = self
            .objects
            .ordered()
            .into_iter()
            .filter_map(|(id, obj)| match obj {
                Obj::Ram { size, .. } => Some(format!(
                    r#"{{"id": {}, "size": {size}, "merge": true, "dump": true, "prealloc": false, "share": false, "reserve": true, "host-nodes": [], "policy": "default"}}"#,
                    Value::String(id.to_owned())
                )),
                Obj::Secret { .. } => None,
            })
            .collect();
        Outcome::Json(format!("[{}]", entries.join(", ")))
    }

    /// `query-pci`: the board's functions, then the devices on `pci.0` by slot.
    pub(crate) fn query_pci(&self) -> Outcome {
        let mut devices: Vec<(u8, String)> = self
            .peripheral
            .items
            .iter()
            .map(|(id, d)| (id.as_str(), d))
            .chain(self.anon.items.values().map(|d| ("", d)))
            .filter_map(|(id, d)| {
                let slot = d.slot?;
                let (pin, irq, ids, regions) = pci_info(d.driver);
                let irq = if irq { r#""irq": 0, "# } else { "" };
                let id = Value::String(id.to_owned());
                Some((
                    slot,
                    format!(
                        r#"{{"bus": 0, "slot": {slot}, "function": 0, {ids}, {irq}"irq_pin": {pin}, "qdev_id": {id}, "regions": {regions}}}"#
                    ),
                ))
            })
            .collect();
        devices.sort_by_key(|(slot, _)| *slot);
        let mut text = String::from(r#"[{"bus": 0, "devices": ["#);
        text.push_str(BOARD_PCI);
        for (_, d) in devices {
            text.push_str(", ");
            text.push_str(&d);
        }
        text.push_str("]}]");
        Outcome::Json(text)
    }

    /// `query-mice`: the USB mice and tablets, newest first, then the PS/2 mouse, which
    /// stays current (a guest would make another one current).
    pub(crate) fn query_mice(&self) -> Outcome {
        let mut mice: Vec<(u32, bool)> = self
            .all_devices()
            .filter_map(|d| match (d.input, d.driver) {
                (Some(i), "usb-tablet") => Some((i, true)),
                (Some(i), "usb-mouse") => Some((i, false)),
                _ => None,
            })
            .collect();
        mice.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        let mut entries: Vec<String> = mice
            .into_iter()
            .map(|(i, absolute)| {
                let name = if absolute {
                    "QEMU HID Tablet"
                } else {
                    "QEMU HID Mouse"
                };
                format!(
                    r#"{{"name": "{name}", "index": {i}, "current": false, "absolute": {absolute}}}"#
                )
            })
            .collect();
        entries.push(
            r#"{"name": "QEMU PS/2 Mouse", "index": 2, "current": true, "absolute": false}"#
                .to_owned(),
        );
        Outcome::Json(format!("[{}]", entries.join(", ")))
    }

    pub(crate) fn qom_list(&self, args: &Map<String, Value>) -> Option<Outcome> {
        let path = str_arg(args, "path")?;
        let node = match self.resolve(path) {
            Resolved::Found(n) => n,
            Resolved::NotFound => return Some(not_found(path)),
            Resolved::Unknown => return None,
        };
        let fixed = |props: &[(&str, &str)]| -> Vec<Value> {
            props
                .iter()
                .map(|(n, t)| json!({"name": n, "type": t}))
                .collect()
        };
        Some(Outcome::Return(match node {
            Node::Root => Value::Array(fixed(&[
                ("type", "string"),
                ("backend", "child<container>"),
                ("machine", &format!("child<{MACHINE_TYPE}>")),
                ("objects", "child<container>"),
                ("chardevs", "child<container>"),
            ])),
            Node::Machine => return machine_reply("qom-list /machine"),
            Node::Container(Which::Objects) => self.objects.list(Obj::type_name),
            Node::Container(which) => self.devices(which).list(|d| d.driver),
            Node::Object(id) => match self.objects.items.get(&id)? {
                Obj::Ram { .. } => {
                    let mut v = fixed(RAM_PROPS);
                    v.push(json!({"name": format!("{id}[0]"), "type": "child<memory-region>"}));
                    Value::Array(v)
                }
                Obj::Secret { .. } => Value::Array(fixed(SECRET_PROPS)),
            },
            Node::Device(which, name) => {
                let dev = self.devices(which).items.get(&name)?;
                if dev.driver != "pci-testdev" {
                    return None;
                }
                Value::Array(fixed(PCI_TESTDEV_PROPS))
            }
        }))
    }

    pub(crate) fn qom_get(&self, args: &Map<String, Value>) -> Option<Outcome> {
        let path = str_arg(args, "path")?;
        let prop = str_arg(args, "property")?;
        let node = match self.resolve(path) {
            Resolved::Found(n) => n,
            Resolved::NotFound => return Some(not_found(path)),
            Resolved::Unknown => return None,
        };
        let child = |base: &str| {
            let base = base.trim_end_matches('/');
            Some(Outcome::Return(Value::String(format!("{base}/{prop}"))))
        };
        match node {
            Node::Root => match prop {
                "type" => Some(Outcome::Return(json!("container"))),
                "backend" | "machine" | "objects" | "chardevs" => child(""),
                _ => Some(prop_not_found("container", prop)),
            },
            Node::Machine => match machine_reply(&format!("qom-get /machine {prop}")) {
                Some(answer) => Some(answer),
                // A property QEMU lists (the RTC's time) whose value the fake does not know.
                None if machine_has(prop) => None,
                None => Some(prop_not_found(MACHINE_TYPE, prop)),
            },
            Node::Container(which) => {
                let has = match which {
                    Which::Objects => self.objects.items.contains_key(prop),
                    _ => self.devices(which).items.contains_key(prop),
                };
                match prop {
                    "type" => Some(Outcome::Return(json!("container"))),
                    _ if has => child(which.path()),
                    _ => Some(prop_not_found("container", prop)),
                }
            }
            Node::Object(id) => {
                let obj = self.objects.items.get(&id)?;
                let t = obj.type_name();
                match (obj, prop) {
                    (_, "type") => Some(Outcome::Return(json!(t))),
                    (Obj::Ram { size, .. }, "size") => Some(Outcome::Return(json!(size))),
                    (Obj::Secret { data }, "data") => Some(Outcome::Return(json!(data))),
                    (Obj::Ram { .. }, p) if p == format!("{id}[0]") => None,
                    (Obj::Ram { .. }, p) if RAM_PROPS.iter().any(|(n, _)| *n == p) => None,
                    (Obj::Secret { .. }, p) if SECRET_PROPS.iter().any(|(n, _)| *n == p) => None,
                    _ => Some(prop_not_found(t, prop)),
                }
            }
            Node::Device(which, name) => {
                let dev = self.devices(which).items.get(&name)?;
                match prop {
                    "type" => Some(Outcome::Return(json!(dev.driver))),
                    "realized" | "hotplugged" => Some(Outcome::Return(json!(true))),
                    p if dev.driver == "pci-testdev"
                        && !PCI_TESTDEV_PROPS.iter().any(|(n, _)| *n == p) =>
                    {
                        Some(prop_not_found(dev.driver, p))
                    }
                    _ => None,
                }
            }
        }
    }

    pub(crate) fn qom_set(&self, args: &Map<String, Value>) -> Option<Outcome> {
        let path = str_arg(args, "path")?;
        let prop = str_arg(args, "property")?;
        let node = match self.resolve(path) {
            Resolved::Found(n) => n,
            Resolved::NotFound => return Some(not_found(path)),
            Resolved::Unknown => return None,
        };
        match node {
            Node::Root | Node::Container(_) => {
                let known = match &node {
                    Node::Root => matches!(prop, "backend" | "machine" | "objects" | "chardevs"),
                    Node::Container(Which::Objects) => self.objects.items.contains_key(prop),
                    Node::Container(which) => self.devices(*which).items.contains_key(prop),
                    _ => false,
                };
                match prop {
                    "type" => Some(not_writable("container", prop)),
                    _ if known => None,
                    _ => Some(prop_not_found("container", prop)),
                }
            }
            Node::Machine => match prop {
                "type" | "peripheral" | "peripheral-anon" | "unattached" | "fw_cfg" | "i440fx" => {
                    Some(not_writable(MACHINE_TYPE, prop))
                }
                _ if !machine_has(prop) => Some(prop_not_found(MACHINE_TYPE, prop)),
                // The machine's own settings are writable (and kept); not modelled.
                _ => None,
            },
            Node::Object(id) => {
                let obj = self.objects.items.get(&id)?;
                let t = obj.type_name();
                let known = match obj {
                    Obj::Ram { .. } => {
                        RAM_PROPS.iter().any(|(n, _)| *n == prop) || prop == format!("{id}[0]")
                    }
                    Obj::Secret { .. } => SECRET_PROPS.iter().any(|(n, _)| *n == prop),
                };
                match (obj, prop) {
                    (_, "type") => Some(not_writable(t, prop)),
                    (Obj::Ram { .. }, "size") => Some(Outcome::generic_error(format!(
                        "cannot change property size of {t} "
                    ))),
                    _ if known => None,
                    _ => Some(prop_not_found(t, prop)),
                }
            }
            Node::Device(which, name) => {
                let dev = self.devices(which).items.get(&name)?;
                match prop {
                    "type" => Some(not_writable(dev.driver, prop)),
                    // Realizing a realized device does nothing.
                    "realized" if args.get("value") == Some(&Value::Bool(true)) => {
                        Some(Outcome::empty())
                    }
                    p if dev.driver == "pci-testdev"
                        && !PCI_TESTDEV_PROPS.iter().any(|(n, _)| *n == p) =>
                    {
                        Some(prop_not_found(dev.driver, p))
                    }
                    _ => None,
                }
            }
        }
    }
}
