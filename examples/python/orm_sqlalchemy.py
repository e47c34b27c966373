"""pg_statemachine under an ORM (SQLAlchemy 1.4, psycopg2): seed 004's shop, governed.

The application keeps its own tables and models -- product.product_status_id is a foreign
key into product_status, exactly as the seed's article builds them. govern_table() puts
the table under the machine `product`: reading through the ORM is unchanged, but the
status column becomes a mirror that only the write path (transition_to) may change. An
ORM flush that sets it directly is refused with SQLSTATE SM007.

Connects with the standard libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE) and works
in its own schema `shop`; it expects a database where that schema does not exist yet
(tests/examples/run creates a fresh one).
Usage: python3 orm_sqlalchemy.py
"""
import json
import uuid

from sqlalchemy import Column, ForeignKey, Integer, SmallInteger, String, create_engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, declarative_base, relationship

CLERK = uuid.UUID("a0000000-0000-0000-0000-000000000004")

# The seed's DDL and statuses, verbatim.
SHOP_DDL = """
CREATE TABLE product_status (
  product_status_id SERIAL PRIMARY KEY,
  product_status_uid VARCHAR(50) NOT NULL UNIQUE,   -- unique string identifier
  description VARCHAR(250) NULL,
  is_in_stock SMALLINT NOT NULL,
  is_buyable SMALLINT NOT NULL,
  is_active SMALLINT NOT NULL
);

CREATE TABLE product (
  product_id SERIAL PRIMARY KEY,
  title VARCHAR(250) NOT NULL,
  product_status_id INTEGER NOT NULL,
  FOREIGN KEY (product_status_id) REFERENCES product_status (product_status_id)
);

INSERT INTO product_status
    (product_status_uid, description, is_in_stock, is_buyable, is_active)
VALUES
    ('in stock', 'Product is in stock', 1, 1, 1),
    ('on order', 'Product is on back order', 0, 1, 1),
    ('unavailable', 'Product is unavailable', 0, 0, 1),
    ('deleted', 'Product is deleted', 0, 0, 0)
;

INSERT INTO product
    (title, product_status_id)
VALUES
    ('EcoBoost Portable Charger', 1),
    ('AquaPure Water Filter', 2),
    ('SolarGlow Garden Lights', 3),
    ('FitFlex Yoga Mat', 4)
;
"""

# The machine speaks the shop's own vocabulary: its state codes are the product_status_uid values.
MACHINE = {
    "machine": "product",
    "description": "Product availability (seed 004), governing shop.product",
    "states": [
        {"code": "in stock", "initial": True},
        {"code": "on order"},
        {"code": "unavailable"},
        {"code": "deleted", "terminal": True},
    ],
    "transitions": [
        {"code": "order", "from": "in stock", "to": "on order", "roles": ["STOCK_CLERK"]},
        {"code": "restock", "from": ["on order", "unavailable"], "to": "in stock", "roles": ["STOCK_CLERK"]},
        {"code": "sell out", "from": ["in stock", "on order"], "to": "unavailable", "roles": ["STOCK_CLERK"]},
        {"code": "delete", "from": "unavailable", "to": "deleted", "roles": ["STOCK_CLERK"]},
    ],
}

Base = declarative_base()


class ProductStatus(Base):
    __tablename__ = "product_status"
    product_status_id = Column(Integer, primary_key=True)
    product_status_uid = Column(String(50), nullable=False, unique=True)
    description = Column(String(250))
    is_in_stock = Column(SmallInteger, nullable=False)
    is_buyable = Column(SmallInteger, nullable=False)
    is_active = Column(SmallInteger, nullable=False)


class Product(Base):
    __tablename__ = "product"
    product_id = Column(Integer, primary_key=True)
    title = Column(String(250), nullable=False)
    product_status_id = Column(Integer, ForeignKey("product_status.product_status_id"), nullable=False)
    status = relationship(ProductStatus)


def setup(engine):
    """The shop as the article builds it, then the machine, then govern_table()."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA shop")
        conn.exec_driver_sql("SET LOCAL search_path = shop, public")
        conn.exec_driver_sql(SHOP_DDL)
        conn.execute(text("SELECT statemachine.define_machine(CAST(:m AS jsonb))"), {"m": json.dumps(MACHINE)})
        # state_values maps the column's values (product_status_id) to the machine's states.
        governed = conn.execute(text(
            "SELECT table_name::text, state_column FROM statemachine.govern_table("
            "'product', 'product_id', 'product_status_id', 'product',"
            " (SELECT jsonb_object_agg(product_status_id, product_status_uid) FROM product_status))"
        )).one()
        cases = conn.execute(text(
            "SELECT count(*) FROM statemachine.case_file WHERE machine = 'product'")).scalar_one()
    print(f"governed {governed[0]}.{governed[1]}: {cases} products adopted as cases")


def show(product, prefix=""):
    print(f"{prefix}product {product.product_id} {product.title}: {product.status.product_status_uid}")


def status_id(session, uid):
    return session.execute(
        select(ProductStatus.product_status_id).where(ProductStatus.product_status_uid == uid)
    ).scalar_one()


def refused(session, e, what):
    """What the application sees when the database refuses a write; the session is rolled back."""
    session.rollback()
    print(f"{what}: {type(e).__name__} {e.orig.pgcode}: {str(e.orig).splitlines()[0]}")


def move_to(session, product, status_uid, actor_id, role):
    """Where the code used to say `product.product_status_id = X`: the one write path.
    transition_to() picks the rule leading to status_uid, checks it, records it, and updates
    product.product_status_id in the same transaction."""
    case_id = session.execute(
        text("SELECT id FROM statemachine.case_file WHERE machine = 'product' AND case_number = :n"),
        {"n": str(product.product_id)},
    ).scalar_one()
    row = session.execute(
        text("SELECT from_state, to_state, transition_code FROM statemachine.transition_to("
             ":case_id, :to_state, :actor_id, :role, :command_id)"),
        {"case_id": case_id, "to_state": status_uid, "actor_id": actor_id, "role": role,
         "command_id": uuid.uuid4()},
    ).one()
    # Before the commit, in the same transaction: the mirror column already moved.
    mirrored = session.execute(
        select(ProductStatus.product_status_uid).join_from(Product, Product.status)
        .where(Product.product_id == product.product_id)
    ).scalar_one()
    session.commit()
    session.refresh(product)
    print(f"move_to {product.product_id}: {row.from_state} -> {row.to_state} by '{row.transition_code}'"
          f" (column in the same transaction: {mirrored})")
    show(product, "  now ")


def main():
    # An empty URL: psycopg2/libpq read PGHOST, PGPORT, PGUSER, PGDATABASE.
    engine = create_engine("postgresql+psycopg2://", future=True,
                           connect_args={"options": "-c search_path=shop,public"})
    setup(engine)

    with Session(engine, future=True) as session:
        # Reading through the ORM relationship is unchanged.
        for product in session.execute(select(Product).order_by(Product.product_id)).scalars():
            show(product)

        charger = session.get(Product, 1)

        # The old way: set the column and commit. The flush's UPDATE is refused.
        charger.product_status_id = status_id(session, "on order")
        try:
            session.commit()
        except DBAPIError as e:
            refused(session, e, "UPDATE through the ORM")
        show(charger, "after rollback: ")

        # The new way: move_to(), the same transaction updates the column.
        move_to(session, charger, "on order", CLERK, "STOCK_CLERK")
        move_to(session, charger, "unavailable", CLERK, "STOCK_CLERK")
        move_to(session, charger, "in stock", CLERK, "STOCK_CLERK")

        # A move no rule allows is refused too (deleted only from unavailable).
        try:
            move_to(session, charger, "deleted", CLERK, "STOCK_CLERK")
        except DBAPIError as e:
            refused(session, e, "move_to 1 deleted")

        # A new product in the initial state: its case is created in the same statement.
        shoes = Product(title="ProFit Running Shoes", status=session.get(ProductStatus, status_id(session, "in stock")))
        session.add(shoes)
        session.commit()
        case = session.execute(
            text("SELECT current_state, state_version FROM statemachine.case_file"
                 " WHERE machine = 'product' AND case_number = :n"), {"n": str(shoes.product_id)}
        ).one()
        print(f"inserted product {shoes.product_id} {shoes.title}: case {case.current_state} (version {case.state_version})")

        # One in another state: refused.
        session.add(Product(title="QuickCook Microwave Oven",
                            status=session.get(ProductStatus, status_id(session, "unavailable"))))
        try:
            session.commit()
        except DBAPIError as e:
            refused(session, e, "INSERT through the ORM")

        # Every governed row agrees with its case.
        disagreements = session.execute(text("SELECT count(*) FROM statemachine.reconcile()")).scalar_one()
        print(f"reconcile: {disagreements} rows")


if __name__ == "__main__":
    main()
