//! The product aggregate [C1]: a SKU with its name, unit weight and price.

use crate::{Cents, DomainError, Grams, RejectionKind, Sku, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// Commands a product accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductCommand {
    /// Registers a new product.
    Register {
        /// Its SKU (also the aggregate id).
        sku: Sku,
        /// Display name (1–64 characters).
        name: String,
        /// Weight of one unit in grams.
        unit_grams: Grams,
        /// Price of one unit.
        price: Cents,
        /// When.
        at: UnixMs,
    },
    /// Changes the list price (cabinets pick it up through their planogram) [C2].
    ChangePrice {
        /// The new price.
        price: Cents,
        /// When.
        at: UnixMs,
    },
    /// Changes the price and/or the name; each change is a new label version, pushed to
    /// every lane that holds the product [C2].
    Update {
        /// The new price, if it changes.
        price: Option<Cents>,
        /// The new name (1–64 characters), if it changes.
        name: Option<String>,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductEvent {
    /// A product was registered.
    ProductRegistered {
        /// SKU.
        sku: Sku,
        /// Name.
        name: String,
        /// Unit weight.
        unit_grams: Grams,
        /// Price.
        price: Cents,
        /// When.
        at: UnixMs,
    },
    /// Its price changed.
    ProductPriceChanged {
        /// Old price.
        from: Cents,
        /// New price.
        to: Cents,
        /// The label version it starts (1 at registration).
        #[serde(default)]
        version: u32,
        /// When.
        at: UnixMs,
    },
    /// Its name changed.
    ProductRenamed {
        /// Old name.
        from: String,
        /// New name.
        to: String,
        /// The label version it starts.
        version: u32,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProductRegistered { .. } => "ProductRegistered",
            Self::ProductPriceChanged { .. } => "ProductPriceChanged",
            Self::ProductRenamed { .. } => "ProductRenamed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a product command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// The SKU is taken.
    #[error("product already exists")]
    AlreadyExists,
    /// No such product.
    #[error("product not found")]
    NotFound,
    /// A field was invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl DomainError for ProductError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists => RejectionKind::Conflict,
            Self::NotFound => RejectionKind::NotFound,
            Self::Invalid { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "product_exists",
            Self::NotFound => "product_not_found",
            Self::Invalid { .. } => "invalid_field",
        }
    }
    fn field(&self) -> Option<String> {
        match self {
            Self::Invalid { field, .. } => Some(field.to_string()),
            _ => None,
        }
    }
}

/// A product's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// SKU, once registered.
    pub sku: Option<Sku>,
    /// Name.
    pub name: String,
    /// Unit weight in grams.
    pub unit_grams: Grams,
    /// Current price.
    pub price: Cents,
    /// The version of what its labels show (price and name): 1 at registration, one up
    /// per change [C2].
    #[serde(default)]
    pub label_version: u32,
}

impl Product {
    /// Whether the product exists.
    pub fn exists(&self) -> bool {
        self.sku.is_some()
    }
}

fn valid_name(name: &str) -> Result<String, ProductError> {
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ProductError::Invalid {
            field: "name",
            reason: "must be 1-64 characters".into(),
        });
    }
    Ok(name)
}

impl Product {
    /// What changing the price and/or name makes happen: one event per real change,
    /// both in one label version (a change to the same value is none).
    pub fn update(&self, price: Option<Cents>, name: Option<String>, at: UnixMs) -> Result<Vec<ProductEvent>, ProductError> {
        if !self.exists() {
            return Err(ProductError::NotFound);
        }
        let name = name.map(|n| valid_name(&n)).transpose()?;
        let version = self.label_version + 1;
        let mut events = Vec::new();
        if let Some(to) = price.filter(|p| *p != self.price) {
            events.push(ProductEvent::ProductPriceChanged {
                from: self.price,
                to,
                version,
                at,
            });
        }
        if let Some(to) = name.filter(|n| *n != self.name) {
            events.push(ProductEvent::ProductRenamed {
                from: self.name.clone(),
                to,
                version,
                at,
            });
        }
        Ok(events)
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            ProductCommand::Register {
                sku,
                name,
                unit_grams,
                price,
                at,
            } => {
                if self.exists() {
                    return Err(ProductError::AlreadyExists);
                }
                let name = valid_name(&name)?;
                if unit_grams <= Grams::ZERO || unit_grams > Grams::of(50_000.0) {
                    return Err(ProductError::Invalid {
                        field: "unit_grams",
                        reason: "must be above 0 and at most 50000".into(),
                    });
                }
                sink.write(
                    ProductEvent::ProductRegistered {
                        sku,
                        name,
                        unit_grams,
                        price,
                        at,
                    },
                    self,
                )
                .await;
            }
            ProductCommand::ChangePrice { price, at } => {
                for e in self.update(Some(price), None, at)? {
                    sink.write(e, self).await;
                }
            }
            ProductCommand::Update { price, name, at } => {
                for e in self.update(price, name, at)? {
                    sink.write(e, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ProductEvent::ProductRegistered {
                sku,
                name,
                unit_grams,
                price,
                ..
            } => {
                self.sku = Some(sku);
                self.name = name;
                self.unit_grams = unit_grams;
                self.price = price;
                self.label_version = 1;
            }
            ProductEvent::ProductPriceChanged { to, version, .. } => {
                self.price = to;
                self.label_version = if version > 0 { version } else { self.label_version + 1 };
            }
            ProductEvent::ProductRenamed { to, version, .. } => {
                self.name = to;
                self.label_version = if version > 0 { version } else { self.label_version + 1 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn registered() -> ProductEvent {
        ProductEvent::ProductRegistered {
            sku: Sku::of("cola"),
            name: "Cola".into(),
            unit_grams: Grams::of(330.0),
            price: Cents::new(300),
            at: 1,
        }
    }

    #[test]
    fn register_then_reject_duplicate() {
        TestFramework::<Product>::with(())
            .given_no_previous_events()
            .when(ProductCommand::Register {
                sku: Sku::of("cola"),
                name: " Cola ".into(),
                unit_grams: Grams::of(330.0),
                price: Cents::new(300),
                at: 1,
            })
            .then_expect_events(vec![registered()]);
        TestFramework::<Product>::with(())
            .given(vec![registered()])
            .when(ProductCommand::Register {
                sku: Sku::of("cola"),
                name: "Cola".into(),
                unit_grams: Grams::of(330.0),
                price: Cents::new(300),
                at: 2,
            })
            .then_expect_error(ProductError::AlreadyExists);
    }

    #[test]
    fn rejects_bad_weight_and_name() {
        for (name, grams, field) in [
            ("Cola", 0.0, "unit_grams"),
            ("Cola", -1.0, "unit_grams"),
            ("Cola", 50_001.0, "unit_grams"),
            ("", 1.0, "name"),
        ] {
            let r = TestFramework::<Product>::with(())
                .given_no_previous_events()
                .when(ProductCommand::Register {
                    sku: Sku::of("x"),
                    name: name.into(),
                    unit_grams: Grams::of(grams),
                    price: Cents::new(1),
                    at: 1,
                })
                .inspect_result();
            assert!(matches!(r, Err(ProductError::Invalid { field: f, .. }) if f == field));
        }
    }

    #[test]
    fn price_change_is_recorded_once() {
        TestFramework::<Product>::with(())
            .given(vec![registered()])
            .when(ProductCommand::ChangePrice {
                price: Cents::new(350),
                at: 2,
            })
            .then_expect_events(vec![ProductEvent::ProductPriceChanged {
                from: Cents::new(300),
                to: Cents::new(350),
                version: 2,
                at: 2,
            }]);
        TestFramework::<Product>::with(())
            .given(vec![registered()])
            .when(ProductCommand::ChangePrice {
                price: Cents::new(300),
                at: 2,
            })
            .then_expect_events(vec![]);
        TestFramework::<Product>::with(())
            .given_no_previous_events()
            .when(ProductCommand::ChangePrice {
                price: Cents::new(300),
                at: 2,
            })
            .then_expect_error(ProductError::NotFound);
    }

    #[test]
    fn price_and_name_change_together_as_one_label_version() {
        let mut p = Product::default();
        p.apply(registered());
        assert_eq!(p.label_version, 1);
        let events = p.update(Some(Cents::new(280)), Some(" Cola Zero ".into()), 5).unwrap();
        assert_eq!(
            events,
            vec![
                ProductEvent::ProductPriceChanged {
                    from: Cents::new(300),
                    to: Cents::new(280),
                    version: 2,
                    at: 5
                },
                ProductEvent::ProductRenamed {
                    from: "Cola".into(),
                    to: "Cola Zero".into(),
                    version: 2,
                    at: 5
                },
            ]
        );
        for e in events {
            p.apply(e);
        }
        assert_eq!((p.price, p.name.as_str(), p.label_version), (Cents::new(280), "Cola Zero", 2));
        assert_eq!(
            p.update(Some(Cents::new(280)), Some("Cola Zero".into()), 6),
            Ok(vec![]),
            "no change, no version"
        );
        assert!(matches!(
            p.update(None, Some(" ".into()), 6),
            Err(ProductError::Invalid { field: "name", .. })
        ));
        // An event from before versions were recorded still counts one up.
        p.apply(ProductEvent::ProductPriceChanged {
            from: Cents::new(280),
            to: Cents::new(290),
            version: 0,
            at: 7,
        });
        assert_eq!(p.label_version, 3);
    }
}
